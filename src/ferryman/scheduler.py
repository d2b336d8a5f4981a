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
  time, and ``next_run_at`` moves to the first slot after now, in the same transaction. After
  downtime this is one catch-up run, never one per missed slot.

Several schedulers may share one store: a job is made only together with moving the
connection's ``next_run_at`` from the value that scheduler read (compare-and-set), and the
database's unique index on (scope, scheduled_for) refuses a second job for a due run whatever
happens.

"Now" is the store's time, not this host's: given no Clock, a pass starts by reading the store's
time (one query) and counts on from it with the monotonic clock (:class:`StoreClock`), so
schedulers on hosts whose clocks disagree make each run's job when the store's time reaches it,
neither early nor late. Tests inject a Clock (``tick(now)``, a ManualClock), which wins; never a
sleep in a test.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Protocol

from ferryman.clock import Clock, StoreClock
from ferryman.errors import StoreUnavailable
from ferryman.jobs.schedules import InvalidSchedule, Schedule, ScheduleType, from_document
from ferryman.service import DueSync, JobService
from ferryman.settings import SchedulerSettings
from ferryman.store.base import Connection, DueRun, FailureStreak, Job

log = logging.getLogger(__name__)
# Jobs per transaction: a pass is bound by commits (a Postgres commit waits for its WAL flush),
# and a shorter transaction holds SQLite's write lock for less time.
_COMMIT_EVERY = 100
# How far the clock may go back (NTP steps, schedulers' clocks a little apart) before the runs
# planned by the later time are planned again from now.
_CLOCK_SLACK = timedelta(minutes=5)


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


def _tell_created(observer: SchedulerObserver, run: ScheduledRun) -> None:
    observer.created(run)


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
        # Given none: the store's time, so a host whose clock is off fires no run early or late.
        self.clock: Clock = clock if clock is not None else StoreClock(self.store)
        self.observer = observer
        self._latest: datetime | None = None  # the latest now seen: a clock going back shows

    # -- planning -----------------------------------------------------------------------------

    def plan(self, now: datetime | None = None) -> int:
        """Give a first ``next_run_at`` to the active scheduled connections that have none (made
        before the scheduler existed); returns how many were planned."""
        now = now or self._pass_start()
        planned = 0
        for conn in self.store.unplanned_connections():
            schedule = self._schedule(conn)
            if schedule is not None and self.store.set_next_run(conn.id, None, schedule.next_run(now)):
                planned += 1
        self._latest = now
        return planned + self.replan_ahead(now)

    def replan_ahead(self, now: datetime) -> int:
        """Move back the next runs planned further ahead than their schedule gives from ``now``
        (by more than a few minutes): they were planned by a clock that was ahead (set wrong,
        then corrected by NTP), and would otherwise wait out the jump, days of no syncs."""
        moved = 0
        for conn in self.store.planned_connections():  # without their catalogs: none is needed
            seen = conn.next_run_at
            schedule = self._schedule(conn)
            if schedule is None or seen is None:
                continue
            upcoming = schedule.next_run(now + _CLOCK_SLACK)
            if upcoming is not None and seen > upcoming:
                planned = schedule.next_run(now)
                if self.store.set_next_run(conn.id, seen, planned):
                    log.warning(
                        "connection %s (%s): next run moved back from %s to %s (planned by a clock ahead)",
                        conn.id,
                        conn.name,
                        f"{seen:%Y-%m-%d %H:%M:%S}",
                        f"{planned:%Y-%m-%d %H:%M:%S}" if planned else None,
                    )
                    moved += 1
        return moved

    # -- one pass -----------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> Pass:
        """Create the job of every run due at ``now`` (default: the clock's now, read again
        for each commit, so a job's ``created_at`` and lag say when it was really made)."""
        fixed = now
        now = now or self._pass_start()
        if self._latest is not None and now < self._latest - _CLOCK_SLACK:
            self.replan_ahead(now)  # the clock went back: see replan_ahead
        self._latest = now if self._latest is None else max(self._latest, now)
        done = Pass()
        after: tuple[datetime, int] | None = None
        while True:
            due = self.store.due_runs(now, self.settings.batch, after)
            streaks = self._streaks([run.connection.id for run in due if run.last_sync_failed])
            ready: list[tuple[Connection, datetime, Schedule]] = []
            for run in due:
                found = self._decide(run, streaks.get(run.connection.id), fixed or self.clock.now(), done)
                if found is not None:
                    ready.append(found)
            for start in range(0, len(ready), _COMMIT_EVERY):
                self._create(ready[start : start + _COMMIT_EVERY], fixed or self.clock.now(), done)
            if len(due) < self.settings.batch:
                return done
            last = due[-1].connection
            assert last.next_run_at is not None
            after = (last.next_run_at, last.id)  # past the runs left due (busy since the query)

    def _pass_start(self) -> datetime:
        """The time a pass starts at: the store's, read afresh (one query), or the injected clock's."""
        return self.clock.read() if isinstance(self.clock, StoreClock) else self.clock.now()

    def _streaks(self, ids: list[int]) -> dict[int, FailureStreak]:
        """The failure streaks of the connections whose newest sync failed (the others have none)."""
        if not ids or not (self.settings.max_failed_jobs or self.settings.max_failed_days):
            return {}
        return self.store.failure_streaks(ids)

    def _decide(
        self, run: DueRun, streak: FailureStreak | None, now: datetime, done: Pass
    ) -> tuple[Connection, datetime, Schedule] | None:
        """The run to make a job for (connection, due time, schedule), or None when its
        connection is re-planned or disabled instead."""
        conn = run.connection
        seen = conn.next_run_at
        assert seen is not None  # a due run has one
        schedule = self._schedule(conn)
        if schedule is None or schedule.type is ScheduleType.MANUAL:
            self.store.set_next_run(conn.id, seen, None)
            return None
        due = seen
        ended = run.last_ended_at
        if schedule.type is ScheduleType.CRON and ended is not None and ended > due:
            # A job ran past this slot: the next run is the first slot after it ended.
            due_after_end = schedule.next_run(min(ended, now))
            if due_after_end is None or due_after_end > now:
                self.store.set_next_run(conn.id, seen, due_after_end)
                done.replanned += 1
                return None
            due = due_after_end
        reason = self._disable_reason(streak, now)
        if reason is not None:
            assert streak is not None  # a reason comes only from a streak
            disabled = self.store.disable_connection(conn.id, reason, streak.last_job_id, now)
            if disabled is not None:  # its webhooks were told in the same transaction
                done.disabled.append(disabled)
                self._tell(lambda observer: observer.disabled(disabled))
            return None
        return conn, due, schedule

    def _create(self, ready: list[tuple[Connection, datetime, Schedule]], now: datetime, done: Pass) -> None:
        """One transaction for these runs' jobs; a run another scheduler took gets none."""
        upcoming: dict[Schedule, datetime | None] = {}  # connections often share a schedule
        runs = []
        for conn, due, schedule in ready:
            if schedule not in upcoming:
                upcoming[schedule] = schedule.next_run(now)
            runs.append(DueSync(conn, due, now, upcoming[schedule]))
        for run, job in zip(runs, self.service.enqueue_scheduled(runs), strict=True):
            if job is None:
                done.taken += 1
                continue
            created = ScheduledRun(job, run.connection, run.due, max(0.0, (now - run.due).total_seconds()))
            done.created.append(created)
            self._tell(partial(_tell_created, run=created))

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
        """Plan, then start a pass every ``interval_s`` (a long pass is followed at once by the
        next) until ``stop`` is set. A store that cannot be reached does not end the loop: the
        observer hears of it and the next pass tries again."""
        planned = False
        while not stop.is_set():
            started = time.monotonic()
            try:
                if not planned:
                    self.plan()
                    planned = True
                self.tick()
            except StoreUnavailable as exc:
                self._store_unavailable(str(exc).strip().splitlines()[0][:300])
            except Exception:  # a bug must not end scheduling for every connection: log, go on
                log.exception("scheduler pass failed; trying again in %ss", self.settings.interval_s)
            stop.wait(max(0.0, self.settings.interval_s - (time.monotonic() - started)))

    def _store_unavailable(self, reason: str) -> None:
        self._tell(lambda observer: observer.store_unavailable(reason, self.settings.interval_s))
