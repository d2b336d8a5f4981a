"""The store of a long-running command (worker, scheduler): waited for while it refuses in a way
that passes on its own (see :mod:`ferryman.store.waiting`); SIGTERM or Ctrl-C meanwhile ends the
command at once, as an interrupt (exit 130), in the middle of a connect too.

A worker's engine is made under the same rules (``--engine temporal`` imports the Temporal SDK,
about a second, before the worker's own handlers are in place), and a Temporal worker waits for
its server as for the store: one line, tries 1 s, 2 s ... 30 s apart, bounded by
``FERRYMAN_STORE_WAIT_S``; a Temporal not up yet is the docker-compose case, as a store is."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ferryman.cli.common import fail, note, print_json
from ferryman.errors import EngineUnavailable

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
    from ferryman.store.waiting import SIGNAL_POLL_S, TELL_AGAIN_S, WAIT_ENV, Backoff, Stopped

    began = time.monotonic()
    told_at: float | None = None
    backoff = Backoff()
    while True:
        try:
            with signals.armed():
                reach()
            return
        except EngineUnavailable as exc:
            waited = time.monotonic() - began
            if bound_s is not None and waited >= bound_s:
                if told_at is None:
                    raise
                raise EngineUnavailable(
                    f"{exc.message} (gave up after waiting {waited:.0f}s: {WAIT_ENV}={bound_s:g})"
                ) from None
            pause = backoff.next_s()
            if told_at is None or time.monotonic() - told_at >= TELL_AGAIN_S:
                told_at = time.monotonic()
                if json:
                    event = {"event": "engine_unavailable", "reason": exc.message, "retry_in_s": pause}
                    print_json({**event, "starting": True}, [], one_line=True)
                else:
                    until_when = "until it answers" if bound_s is None else f"for up to {bound_s:g}s"
                    note(f"waiting for Temporal {until_when} (SIGTERM or Ctrl-C to stop): {exc.message}")
        until = time.monotonic() + (
            pause if bound_s is None else min(pause, max(0.0, began + bound_s - time.monotonic()))
        )
        while time.monotonic() < until:
            if signals():
                raise Stopped
            time.sleep(min(SIGNAL_POLL_S, max(0.0, until - time.monotonic())))
