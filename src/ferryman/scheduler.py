"""The scheduler: runs connections on their schedules (``docs/scheduling.md``).

    scheduler = Scheduler(service)
    scheduler.tick()          # one pass: every due connection gets its sync job
    scheduler.run(stop)       # `ferryman scheduler` / `ferryman server`: plan, then tick every few s

A connection is due when it is active and its ``next_run_at`` has come. One pass reads the due
connections that have no live job in one query (a running connection is not due: it is looked at
again once its job has ended), and for each:

* a cron connection whose last job ended after the slot that made it due (the job ran past it)
  is moved to the first slot after that end, as Airbyte does; a basic one runs at once;
* a connection with too many failed syncs in a row, or only failures for too long, is disabled
  (Airbyte's 100 jobs / 14 days) instead of run;
* otherwise one sync job is created through the job service, with ``scheduled_for`` = the due
  time, and ``next_run_at`` moves to the first slot after now. After downtime this is one
  catch-up run, never one per missed slot.

Several schedulers may share one store: the unique index on (scope, scheduled_for) lets only one
of them create the job of a due run (the others get AlreadyScheduled), and ``next_run_at`` is
moved compare-and-set. Time is injected: ``tick(now)`` and a Clock, never a sleep in a test.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from ferryman.clock import Clock, SystemClock
from ferryman.errors import ConnectionBusy, StoreUnavailable
from ferryman.jobs.schedules import InvalidSchedule, Schedule, ScheduleType, from_document
from ferryman.service import JobService
from ferryman.settings import SchedulerSettings
from ferryman.store.base import AlreadyScheduled, Connection, DueRun, FailureStreak, Job, NotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScheduledRun:
    """A job the scheduler created: for which connection, the due time, and how late."""

    job: Job
    connection: Connection
    due: datetime
    lag_s: float


@dataclass
class Pass:
    """What one pass did."""

    created: list[ScheduledRun] = field(default_factory=list)
    disabled: list[Connection] = field(default_factory=list)
    replanned: int = 0  # cron runs moved after a job that ran past their slot
    taken: int = 0  # due runs another scheduler (or a manual sync) got to first


class SchedulerObserver(Protocol):
    """Told what the scheduler does (``ferryman scheduler`` prints a line each). Must not block."""

    def created(self, run: ScheduledRun) -> None: ...

    def disabled(self, connection: Connection) -> None: ...

    def store_unavailable(self, reason: str, retry_in_s: float) -> None: ...


class LineObserver:
    """A line of text per job created and connection disabled (``ferryman scheduler`` and
    ``ferryman server`` print them on stderr)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def created(self, run: ScheduledRun) -> None:
        due = run.due.strftime("%Y-%m-%d %H:%M:%S UTC")
        self._write(
            f"job {run.job.id} {run.job.type.value} {run.connection.name}: created for the run due {due}"
            f" ({run.lag_s:.1f}s late)"
        )

    def disabled(self, connection: Connection) -> None:
        self._write(f"connection {connection.name} (id {connection.id}): {connection.status_reason}")

    def store_unavailable(self, reason: str, retry_in_s: float) -> None:
        self._write(f"{reason}; trying again in {retry_in_s:g}s")


class Scheduler:
    def __init__(
        self,
        service: JobService,
        settings: SchedulerSettings | None = None,
        clock: Clock | None = None,
        observer: SchedulerObserver | None = None,
    ) -> None:
        self.service = service
        self.store = service.store
        self.settings = settings or service.settings.scheduler
        self.clock = clock or SystemClock()
        self.observer = observer

    # -- planning -----------------------------------------------------------------------------

    def plan(self, now: datetime | None = None) -> int:
        """Give a first ``next_run_at`` to the active scheduled connections that have none (made
        before the scheduler existed); returns how many were planned."""
        now = now or self.clock.now()
        planned = 0
        for conn in self.store.unplanned_connections():
            schedule = self._schedule(conn)
            if schedule is not None and self.store.set_next_run(conn.id, None, schedule.next_run(now)):
                planned += 1
        return planned

    # -- one pass -----------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> Pass:
        """Create the job of every run due at ``now`` (default: the clock's now)."""
        now = now or self.clock.now()
        done = Pass()
        after: tuple[datetime, int] | None = None
        while True:
            due = self.store.due_runs(now, self.settings.batch, after)
            streaks = self._streaks([run.connection.id for run in due])
            for run in due:
                self._handle(run, streaks.get(run.connection.id), now, done)
            if len(due) < self.settings.batch:
                return done
            last = due[-1].connection
            assert last.next_run_at is not None
            after = (last.next_run_at, last.id)  # past the runs left due (busy since the query)

    def _streaks(self, ids: list[int]) -> dict[int, FailureStreak]:
        if not (self.settings.max_failed_jobs or self.settings.max_failed_days):
            return {}
        return self.store.failure_streaks(ids)

    def _handle(self, run: DueRun, streak: FailureStreak | None, now: datetime, done: Pass) -> None:
        conn = run.connection
        seen = conn.next_run_at
        assert seen is not None  # a due run has one
        schedule = self._schedule(conn)
        if schedule is None or schedule.type is ScheduleType.MANUAL:
            self.store.set_next_run(conn.id, seen, None)
            return
        due = seen
        ended = run.last_ended_at
        if schedule.type is ScheduleType.CRON and ended is not None and ended > due:
            # A job ran past this slot: the next run is the first slot after it ended.
            due_after_end = schedule.next_run(min(ended, now))
            if due_after_end is None or due_after_end > now:
                self.store.set_next_run(conn.id, seen, due_after_end)
                done.replanned += 1
                return
            due = due_after_end
        reason = self._disable_reason(streak, now)
        if reason is not None:
            disabled = self.store.disable_connection(conn.id, reason)
            if disabled is not None:
                # NOTIFY: connection disabled
                done.disabled.append(disabled)
                self._tell(lambda observer: observer.disabled(disabled))
            return
        try:
            job = self.service.enqueue_replication(conn, scheduled_for=due, now=now)
        except AlreadyScheduled:
            # Another scheduler made this run's job; it moves next_run_at, unless it died first.
            self.store.set_next_run(conn.id, seen, schedule.next_run(now))
            done.taken += 1
            return
        except ConnectionBusy:  # a sync started since the query: this run waits for it to end
            done.taken += 1
            return
        except NotFound:  # deleted since the query
            return
        self.store.set_next_run(conn.id, seen, schedule.next_run(now))
        created = ScheduledRun(job, conn, due, max(0.0, (now - due).total_seconds()))
        done.created.append(created)
        self._tell(lambda observer: observer.created(created))

    def _disable_reason(self, streak: FailureStreak | None, now: datetime) -> str | None:
        if streak is None:
            return None
        limit, days = self.settings.max_failed_jobs, self.settings.max_failed_days
        if limit and streak.failures >= limit:
            return (
                f"disabled by the scheduler after {streak.failures} failed sync jobs in a row "
                f"(the last: job {streak.last_job_id})"
            )
        if days and streak.first_failed_at <= now - timedelta(days=days):
            return (
                f"disabled by the scheduler: only failed sync jobs for {days:g} days, since "
                f"{streak.first_failed_at:%Y-%m-%d %H:%M} UTC (the last: job {streak.last_job_id})"
            )
        return None

    def _schedule(self, conn: Connection) -> Schedule | None:
        """The connection's schedule; None (with a warning) for one stored unreadable by an
        older version, which is then not run rather than run wrongly."""
        try:
            return from_document(conn.schedule)
        except InvalidSchedule as exc:
            log.warning("connection %s (%s) is not scheduled: %s", conn.id, conn.name, exc)
            return None

    def _tell(self, call: Callable[[SchedulerObserver], None]) -> None:
        if self.observer is None:
            return
        try:
            call(self.observer)
        except Exception:  # an observer that fails (a closed stdout) never stops the scheduler
            log.exception("scheduler observer failed")

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Plan, then tick every ``interval_s`` until ``stop`` is set. A store that cannot be
        reached does not end the loop: the observer hears of it and the next pass tries again."""
        planned = False
        while not stop.is_set():
            try:
                if not planned:
                    self.plan()
                    planned = True
                self.tick()
            except StoreUnavailable as exc:
                self._store_unavailable(str(exc).strip().splitlines()[0][:300])
            except Exception:  # a bug must not end scheduling for every connection: log, go on
                log.exception("scheduler pass failed; trying again in %ss", self.settings.interval_s)
            stop.wait(self.settings.interval_s)

    def _store_unavailable(self, reason: str) -> None:
        self._tell(lambda observer: observer.store_unavailable(reason, self.settings.interval_s))
