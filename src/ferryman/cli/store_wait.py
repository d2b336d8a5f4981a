"""The store of a long-running command (worker, scheduler): waited for while it refuses in a way
that passes on its own (see :mod:`ferryman.store.waiting`); SIGTERM or Ctrl-C meanwhile ends the
command at once, as an interrupt (exit 130), in the middle of a connect too.

A worker's engine is made under the same rules (``--engine temporal`` imports the Temporal SDK,
about a second, before the worker's own handlers are in place), and a Temporal worker waits for
its server as for the store: one line, tries 1 s, 2 s ... 30 s apart, bounded by
``FERRYMAN_STORE_WAIT_S``; a Temporal not up yet is the docker-compose case, as a store is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ferryman.cli.common import fail, note, print_json
from ferryman.errors import EngineUnavailable, FerrymanError

if TYPE_CHECKING:
    from ferryman.engines.base import WorkerEngine
    from ferryman.store import SqlJobStore
    from ferryman.store.waiting import StopSignals


def open_waiting(home: Path | None, json: bool) -> SqlJobStore:
    """The store, once it answers; a ``store_unavailable`` event (``--json``) or a line while not."""
    from ferryman.store.waiting import Stopped, StopSignals, open_store_waiting, wait_bound_s

    def say(line: str, reason: str, retry_in_s: float) -> None:
        if json:
            event = {
                "event": "store_unavailable",
                "reason": reason,
                "retry_in_s": retry_in_s,
                "starting": True,
            }
            print_json(event, [], one_line=True)
        else:
            note(line)

    bound_s = wait_bound_s()
    try:
        with StopSignals() as signals:
            return open_store_waiting(home, say, signals, bound_s, trying=signals.armed)
    except Stopped:
        fail("interrupted while waiting for the store", 130)


def engine_waiting(make: Callable[[], WorkerEngine], json: bool) -> WorkerEngine:
    """The worker's engine from ``make()``; for one with a server of its own to reach (Temporal:
    a ``reach`` method that raises EngineUnavailable), once that server answers."""
    from ferryman.store.waiting import Stopped, StopSignals, wait_bound_s

    bound_s = wait_bound_s()
    doing = "starting the worker"
    try:
        with StopSignals() as signals:
            with signals.armed():
                engine = make()
            reach: Callable[[], None] | None = getattr(engine, "reach", None)
            if reach is not None:
                doing = "waiting for Temporal"
                _reach_waiting(reach, json, signals, bound_s)
            return engine
    except Stopped:
        fail(f"interrupted while {doing}", 130)


def _reach_waiting(
    reach: Callable[[], None], json: bool, signals: StopSignals, bound_s: float | None
) -> None:
    from ferryman.store.waiting import keep_trying

    def say(line: str, reason: str, retry_in_s: float) -> None:
        if json:
            event = {"event": "engine_unavailable", "reason": reason, "retry_in_s": retry_in_s}
            print_json({**event, "starting": True}, [], one_line=True)
        else:
            note(line)

    def passes(exc: FerrymanError) -> bool:
        return isinstance(exc, EngineUnavailable)

    keep_trying(reach, "Temporal", passes, say, signals, bound_s, trying=signals.armed)
