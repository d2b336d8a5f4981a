"""A PyPI install on stderr: a spinner with the current step on a terminal, a line per step
otherwise (a log file, CI). Either way the last line says what was installed and how long it took.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ferryman.cli.terminal import plain
from ferryman.connectors.install_progress import InstallProgress, report_installs

if TYPE_CHECKING:
    from rich.console import Console
    from rich.status import Status


class ConsoleInstallProgress:
    def __init__(self, console: Console, requirement: str) -> None:
        from rich.errors import LiveError
        from rich.status import Status

        self._console = console
        self._prefix = f"{requirement}: "
        self._step = ""
        self._status: Status | None = None
        if console.is_terminal:
            status = Status("", console=console, spinner="dots")
            try:
                status.start()
                self._status = status
            except LiveError:  # another live display owns the terminal: plain lines then
                pass

    def step(self, text: str) -> None:
        self._step = text
        if self._status is not None:
            self._status.update(plain(self._prefix + text))  # a status takes a str as markup
        else:
            self._line(text)

    def detail(self, text: str) -> None:
        if self._status is not None:
            self._status.update(plain(f"{self._prefix}{self._step}: {text}"))

    def finish(self, text: str | None) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        if text is not None:
            self._line(text)

    def _line(self, text: str) -> None:
        self._console.print(self._prefix + text, highlight=False, soft_wrap=True, markup=False)


def report_installs_on(console: Callable[[], Console]) -> None:
    """Show every PyPI install of this process on ``console()``, made (and rich imported) only
    when an install starts."""

    def reporter(requirement: str) -> InstallProgress:
        return ConsoleInstallProgress(console(), requirement)

    report_installs(reporter)
