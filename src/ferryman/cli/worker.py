"""``ferryman worker``: a local engine that runs queued jobs until it is told to stop.

First SIGTERM/SIGINT: stop claiming jobs and let the running attempts finish. Second: cancel
them (their connectors get SIGTERM, grace, SIGKILL) and exit once they have stopped. Handlers
only count signals; the main thread acts on them while the engine runs on another thread.

Each attempt it starts and ends is a line on stderr (with ``--json``, an event on stdout):

    job 12 sync faker-to-duckdb: started (attempt 0)
    job 12 sync faker-to-duckdb: succeeded in 5.7s (attempt 0)
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated

import typer

from ferryman.cli.common import (
    JsonOption,
    SignalCounter,
    duration,
    guarded,
    note,
    print_json,
    seconds_between,
    when,
)
from ferryman.cli.context import DESTINATION, SOURCE
from ferryman.settings import Settings
from ferryman.views import Names

if TYPE_CHECKING:
    from ferryman.engines.base import WorkerEngine
    from ferryman.store.base import Attempt, Job, JobStore

POLL_S = 0.2
EngineOption = Annotated[
    str | None,
    typer.Option(
        "--engine", help="local (default) or temporal; default: FERRYMAN_ENGINE.", show_default=False
    ),
]


SwitchOption = Annotated[
    bool,
    typer.Option(
        "--switch-engine",
        help="Make this worker's engine the one that works the store, replacing the kind recorded "
        "by its first worker (stop every worker of that kind first).",
    ),
]


def worker(json: JsonOption = False, engine_name: EngineOption = None, switch: SwitchOption = False) -> None:
    """Run queued jobs (`connections sync --detach`, retries) until SIGTERM or Ctrl-C.

    A store is worked by one kind of engine, local or temporal: the first worker records its
    kind, and a worker of the other kind is refused (else both would run the same jobs)."""

    def action() -> int:
        from ferryman.cli.store_wait import engine_waiting, open_waiting
        from ferryman.engines.choose import worker_engine

        settings = Settings.from_env()
        with open_waiting(settings.home, json) as store:
            engine: WorkerEngine = engine_waiting(
                lambda: worker_engine(store, settings, engine_name, switch), json
            )
            engine.observer = JobLines(store, json)
            # Counted from before the "started" line: a supervisor's SIGTERM right after it is a
            # stop as any other, not the default end by the signal (exit -15).
            signals = SignalCounter()
            try:
                _announce(engine, store.url, json)
                _run(engine, signals)
            finally:
                signals.restore()
        if json:
            print_json({"event": "stopped", "engine_id": engine.engine_id}, [], one_line=True)
        else:
            note(f"worker {engine.engine_id} stopped")
        return 0

    guarded(action)


class JobLines:
    """A line per attempt this worker starts and ends: job id, type, scope, status, duration."""

    def __init__(self, store: JobStore, json: bool) -> None:
        self._store = store
        self._json = json

    def started(self, job: Job, attempt: Attempt) -> None:
        self._say(job, attempt, "started", {"event": "job_started"})

    def ended(self, job: Job, attempt: Attempt) -> None:
        seconds = seconds_between(attempt.created_at, attempt.ended_at)
        text = f"{job.status.value} in {duration(seconds)}"
        if job.next_attempt_at is not None and not job.status.terminal:
            text += f", next attempt at {when(job.next_attempt_at, short=True)}"
        event = {"event": "job_ended", "status": job.status.value, "duration_s": seconds}
        self._say(job, attempt, text, {**event, "attempt_status": attempt.status.value})

    def store_unavailable(self, reason: str, retry_in_s: float) -> None:
        if self._json:
            event = {"event": "store_unavailable", "reason": reason, "retry_in_s": retry_in_s}
            print_json(event, [], one_line=True)
        else:
            note(f"{reason}; trying again in {retry_in_s:.0f}s")

    def _say(self, job: Job, attempt: Attempt, text: str, event: dict[str, object]) -> None:
        names = Names([], [])  # a spec job is named by its connector or definition: no reads
        if job.type.is_replication or (job.scope or "").split(":")[0] in (SOURCE, DESTINATION):
            names = Names(
                self._store.connection_labels(),
                [*self._store.list_actors(SOURCE), *self._store.list_actors(DESTINATION)],
            )
        scope = names.scope(job)
        if self._json:
            about = {"job_id": job.id, "type": job.type.value, "scope": scope, "attempt": attempt.number}
            print_json({**event, **about}, [], one_line=True)
        else:
            note(f"job {job.id} {job.type.value} {scope}: {text} (attempt {attempt.number})")


def _announce(engine: WorkerEngine, url: str, json: bool) -> None:
    limits = engine.limits
    if json:
        started = {"event": "started", "engine_id": engine.engine_id, "limits": limits, "store": url}
        print_json(started, [], one_line=True)
        return
    slots = ", ".join(f"{slot} {limit}" for slot, limit in limits.items())
    note(f"worker {engine.engine_id} started: at most {slots} at once; store {url}")
    note("SIGTERM or Ctrl-C: finish running jobs and exit; twice: cancel them")


def _run(engine: WorkerEngine, signals: SignalCounter) -> None:
    stop = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            engine.run(stop)
        except BaseException as exc:  # re-raised on the main thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="engine", daemon=True)
    thread.start()
    acted_on = 0
    while thread.is_alive():
        thread.join(POLL_S)
        if signals.count > acted_on:
            acted_on = signals.count
            _on_signal(engine, stop, first=acted_on == 1)
    if failure:
        raise failure[0]


def _on_signal(engine: WorkerEngine, stop: threading.Event, first: bool) -> None:
    stop.set()
    if first:
        running = len(engine.running_attempt_ids())
        note(f"stopping: no new jobs; waiting for {running} running attempt(s) (again to cancel them)")
    else:
        note("cancelling the running attempts")
        engine.cancel_all()
