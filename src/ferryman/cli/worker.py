"""``ferryman worker``: a local engine that runs queued jobs until it is told to stop.

First SIGTERM/SIGINT: stop claiming jobs and let the running attempts finish. Second: cancel
them (their connectors get SIGTERM, grace, SIGKILL) and exit once they have stopped. Handlers
only count signals; the main thread acts on them while the engine runs on another thread.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ferryman.cli.common import JsonOption, SignalCounter, guarded, note, print_json
from ferryman.settings import Settings

if TYPE_CHECKING:
    from ferryman.engines.local import LocalEngine

POLL_S = 0.2


def worker(json: JsonOption = False) -> None:
    """Run queued jobs (`connections sync --detach`, retries) until SIGTERM or Ctrl-C."""

    def action() -> int:
        from ferryman.engines.local import LocalEngine
        from ferryman.store import open_store

        settings = Settings.from_env()
        with open_store(home=settings.home) as store:
            engine = LocalEngine(store, settings)
            _announce(engine, store.url, json)
            _run(engine)
        if json:
            print_json({"event": "stopped", "engine_id": engine.engine_id}, [], one_line=True)
        else:
            note(f"worker {engine.engine_id} stopped")
        return 0

    guarded(action)


def _announce(engine: LocalEngine, url: str, json: bool) -> None:
    limits = engine.limits
    if json:
        started = {"event": "started", "engine_id": engine.engine_id, "limits": limits, "store": url}
        print_json(started, [], one_line=True)
        return
    slots = ", ".join(f"{slot} {limit}" for slot, limit in limits.items())
    note(f"worker {engine.engine_id} started: at most {slots} at once; store {url}")
    note("SIGTERM or Ctrl-C: finish running jobs and exit; twice: cancel them")


def _run(engine: LocalEngine) -> None:
    stop = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            engine.run(stop)
        except BaseException as exc:  # re-raised on the main thread
            failure.append(exc)

    signals = SignalCounter()
    thread = threading.Thread(target=target, name="engine", daemon=True)
    thread.start()
    try:
        acted_on = 0
        while thread.is_alive():
            thread.join(POLL_S)
            if signals.count > acted_on:
                acted_on = signals.count
                _on_signal(engine, stop, first=acted_on == 1)
    finally:
        signals.restore()
    if failure:
        raise failure[0]


def _on_signal(engine: LocalEngine, stop: threading.Event, first: bool) -> None:
    stop.set()
    if first:
        running = len(engine.running_attempt_ids())
        note(f"stopping: no new jobs; waiting for {running} running attempt(s) (again to cancel them)")
    else:
        note("cancelling the running attempts")
        engine.cancel_all()
