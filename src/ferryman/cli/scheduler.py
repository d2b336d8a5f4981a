"""``ferryman scheduler``: runs connections on their schedules, on its own (``ferryman server``
runs the same scheduler unless ``--no-scheduler``).

It creates jobs and, unless ``--no-notifications``, posts the webhooks' events; a
``ferryman worker`` (or a server's engine) runs the jobs. Several schedulers
may share one Postgres store; each due run still gets exactly one job. SIGTERM or Ctrl-C: it
finishes the pass in progress and exits.

``--once`` makes one pass and exits (a cron-driven deployment, and tests); ``--now`` sets that
pass's time, so a test can run real scheduler processes at the moments it chooses.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from ferryman.cli.common import JsonOption, SignalCounter, guarded, note, print_json
from ferryman.cli.worker import EngineOption
from ferryman.errors import UserInputError
from ferryman.settings import Settings

if TYPE_CHECKING:
    from ferryman.scheduler import Pass, ScheduledRun, Scheduler
    from ferryman.store.base import Connection

POLL_S = 0.2
OnceOption = Annotated[
    bool, typer.Option("--once", help="Make one pass over the due connections, then exit.")
]
NowOption = Annotated[
    str | None,
    typer.Option(
        "--now",
        help="With --once: the pass's time (ISO 8601; UTC unless it has an offset) instead of the clock's.",
        show_default=False,
    ),
]


def scheduler(
    json: JsonOption = False,
    engine_name: EngineOption = None,
    once: OnceOption = False,
    now: NowOption = None,
    no_notifications: Annotated[
        bool,
        typer.Option("--no-notifications", help="Do not post notification webhooks from this process."),
    ] = False,
) -> None:
    """Create the sync jobs of connections whose schedule is due, until SIGTERM or Ctrl-C."""

    def action() -> int:
        from ferryman.cli.store_wait import open_waiting
        from ferryman.engines.choose import command_engine, is_temporal
        from ferryman.scheduler import Scheduler
        from ferryman.service import JobService
        from ferryman.store import open_store

        at = _moment(now, once)
        settings = Settings.from_env()
        # --once is a one-shot command: it ends at once on a store that refuses, as others do.
        with open_store(home=settings.home) if once else open_waiting(settings.home, json) as store:
            # Temporal runs a job once its workflow is started: the scheduler submits what it makes.
            submitter = command_engine(store, settings, engine_name) if is_temporal(engine_name) else None
            service = JobService(store, settings, submitter)
            runner = Scheduler(service, settings.scheduler, observer=_Lines(json))
            if once:
                runner.plan(at)
                _summary(runner.tick(at), json)
                return 0
            from ferryman.notifications.running import dispatching

            signals = SignalCounter()  # before saying it started: a SIGTERM from then on is heard
            try:
                _announce(runner, store.url, json)
                # A deployment without a server still tells its webhooks (FERRYMAN_PUBLIC_URL for links).
                with dispatching(store, None if no_notifications else "", note):
                    _run(runner, signals)
            finally:
                signals.restore()
        if json:
            print_json({"event": "stopped"}, [], one_line=True)
        else:
            note("scheduler stopped")
        return 0

    guarded(action)


_FIRST_YEAR, _LAST_YEAR = 1970, 9000


def _moment(text: str | None, once: bool) -> datetime | None:
    if text is None:
        return None
    if not once:
        raise UserInputError("--now goes with --once: a scheduler that runs on does so on the clock")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserInputError(f"--now {text!r} is not an ISO 8601 time, e.g. 2026-01-01T12:00:00Z") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        in_utc: datetime | None = moment.astimezone(UTC)
    except OverflowError:  # before year 1 or after 9999 in UTC
        in_utc = None
    # Far from the calendar's end: a schedule looks up to 10 years past it for its next slot.
    if in_utc is None or not _FIRST_YEAR <= in_utc.year <= _LAST_YEAR:
        raise UserInputError(
            f"--now {text!r} is out of range: give a time in the years {_FIRST_YEAR}-{_LAST_YEAR}"
        )
    return in_utc


class _Lines:
    """A line on stderr (with ``--json``, an event on stdout) per job created and connection disabled."""

    def __init__(self, json: bool) -> None:
        from ferryman.scheduler import LineObserver

        self._json = json
        self._text = LineObserver(note)

    def created(self, run: ScheduledRun) -> None:
        if not self._json:
            self._text.created(run)
            return
        event = {
            "event": "job_created",
            "job_id": run.job.id,
            "connection_id": run.connection.id,
            "connection": run.connection.name,
            "scheduled_for": run.due.isoformat(),
            "lag_s": run.lag_s,
        }
        print_json(event, [], one_line=True)

    def disabled(self, connection: Connection) -> None:
        if not self._json:
            self._text.disabled(connection)
            return
        event = {
            "event": "connection_disabled",
            "connection_id": connection.id,
            "connection": connection.name,
            "reason": connection.status_reason,
        }
        print_json(event, [], one_line=True)

    def store_unavailable(self, reason: str, retry_in_s: float) -> None:
        if self._json:
            print_json(
                {"event": "store_unavailable", "reason": reason, "retry_in_s": retry_in_s}, [], one_line=True
            )
        else:
            self._text.store_unavailable(reason, retry_in_s)


def _summary(done: Pass, json: bool) -> None:
    if json:
        event = {
            "event": "pass",
            "created": [run.job.id for run in done.created],
            "disabled": [c.id for c in done.disabled],
            "replanned": done.replanned,
            "taken": done.taken,
        }
        print_json(event, [], one_line=True)
        return
    note(
        f"one pass: {len(done.created)} job(s) created, {len(done.disabled)} connection(s) disabled, "
        f"{done.taken} run(s) already taken"
    )


def _announce(runner: Scheduler, url: str, json: bool) -> None:
    settings = runner.settings
    if json:
        print_json({"event": "started", "interval_s": settings.interval_s, "store": url}, [], one_line=True)
        return
    note(f"scheduler started: a pass every {settings.interval_s:g}s; store {url}")
    note(
        f"connections are disabled after {settings.max_failed_jobs} failed syncs in a row or "
        f"{settings.max_failed_days:g} days of only failures (0: never)"
    )
    note("SIGTERM or Ctrl-C: finish the pass and exit")


def _run(runner: Scheduler, signals: SignalCounter) -> None:
    stop = threading.Event()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            runner.run(stop)
        except BaseException as exc:  # re-raised on the main thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="scheduler", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(POLL_S)
        if signals.count and not stop.is_set():
            note("stopping: no new passes")
            stop.set()
    if failure:
        raise failure[0]
