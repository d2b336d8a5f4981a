"""How a PyPI install tells people what it is doing: it takes a minute or more.

An install reports its steps (a virtualenv, pip, the entry point check, done) and, within a
step, what pip is at. Where they go is for the program to say: the CLI shows a spinner on a
terminal and one line per step otherwise (``ferryman.cli.install_progress``); anything else
(the API server, a Temporal worker) gets the steps in its log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("ferryman.connectors.pypi")


class InstallProgress(Protocol):
    """The progress of one install; ``finish`` is called exactly once, at its end."""

    def step(self, text: str) -> None:
        """A new step of the install: a line of its own."""

    def detail(self, text: str) -> None:
        """What the current step is doing now (pip's current package); worth showing only live."""

    def finish(self, text: str | None) -> None:
        """The install ended: ``text`` says how, or None when it failed (its error follows)."""


class LoggedProgress:
    """The default: each step and the outcome as a log line."""

    def __init__(self, requirement: str) -> None:
        self._requirement = requirement

    def step(self, text: str) -> None:
        log.info("%s: %s", self._requirement, text)

    def detail(self, text: str) -> None:
        pass

    def finish(self, text: str | None) -> None:
        if text is not None:
            log.info("%s: %s", self._requirement, text)


InstallReporter = Callable[[str], InstallProgress]

_lock = threading.Lock()
_reporter: InstallReporter = LoggedProgress


def report_installs(reporter: InstallReporter) -> None:
    """Send the progress of every install from now on to ``reporter(requirement)``."""
    global _reporter
    with _lock:
        _reporter = reporter


def start_progress(requirement: str) -> InstallProgress:
    with _lock:
        reporter = _reporter
    return reporter(requirement)
