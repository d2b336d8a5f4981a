"""The scheduler on SQLite and Postgres alike: time moves only when a test moves a ManualClock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError

from ferryman.clock import ManualClock
from ferryman.jobs.schedules import InvalidSchedule, parse_schedule
from ferryman.jobs.states import JobStatus, JobType
from ferryman.scheduler import Scheduler
from ferryman.service import JobService
from ferryman.settings import SchedulerSettings, Settings
from ferryman.store import SqlJobStore, open_store
from ferryman.store.base import Connection, Job
from ferryman.store.schema import jobs
from tests.contract.store_support import T0, failure, log_path, store, store_url

__all__ = ["store", "store_url"]

HOUR = 3600.0


class World:
    """A store, a job service and a scheduler sharing one ManualClock."""

    def __init__(self, store: SqlJobStore, settings: SchedulerSettings | None = None) -> None:
        self.store = store
        self.clock = ManualClock(T0)
        self.service = JobService(store, Settings(), clock=self.clock)
        self.scheduler = Scheduler(self.service, settings or SchedulerSettings(), self.clock)
        self.source = store.create_actor("source", "src", "builtin:source_bench", {})
        self.destination = store.create_actor("destination", "dst", "builtin:destination_devnull", {})

    def connection(self, schedule: str, name: str = "orders", timezone: str | None = None) -> Connection:
        made = self.store.create_connection(name, self.source.id, self.destination.id, {"streams": []})
        return self.service.update_connection(made, schedule=parse_schedule(schedule, timezone))

    def at(self, moment: datetime) -> list[Job]:
        """Move the clock to ``moment``, run one pass, and return the jobs it created."""
        self.clock.advance((moment - self.clock.now()).total_seconds())
        return [run.job for run in self.scheduler.tick().created]

    def reread(self, conn: Connection) -> Connection:
        return self.store.get_connection_by_id(conn.id)

    def start(self, job: Job) -> None:
        claimed = self.store.claim("engine", {"sync": 1}, self.clock.now(), log_path)
        assert [j.id for j, _ in claimed] == [job.id]

    def finish(self, job: Job, at: datetime, succeed: bool = True) -> None:
        """The job runs (from now, unless it runs already) and ends at ``at``; the clock moves there."""
        if self.store.get_job(job.id).status is JobStatus.PENDING:
            self.start(job)
        attempt = self.store.list_attempts(job.id)[-1]
        self.clock.advance((at - self.clock.now()).total_seconds())
        if succeed:
            self.store.succeed_attempt(attempt, {}, at)
        else:
            self.store.fail_attempt(attempt, None, failure(), at)
            self.store.fail_job(job.id, at)

    def sync_jobs(self, conn: Connection) -> list[Job]:
        return sorted(self.store.list_jobs(scope=str(conn.id), type=JobType.SYNC), key=lambda j: j.id)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def test_advancing_the_clock_makes_a_run_due_and_its_job_appears(store: SqlJobStore) -> None:
    world = World(store)
    conn = world.connection("every 1h")
    assert conn.next_run_at == at(1)
    assert world.at(at(0.99)) == []
    [job] = world.at(at(1))
    assert (job.type, job.scope, job.status) == (JobType.SYNC, str(conn.id), JobStatus.PENDING)
    assert job.scheduled_for == at(1) and job.created_at == at(1)
    assert job.config["connection_id"] == conn.id  # a real sync job, as `connections sync` makes
    assert world.reread(conn).next_run_at == at(2)
    assert world.at(at(1.5)) == []  # the next run is not due yet


def test_a_running_connection_is_skipped_and_its_next_cron_run_follows_the_end(store: SqlJobStore) -> None:
    world = World(store)
    conn = world.connection("cron 0 0 * * * ?")  # every hour on the hour
    [first] = world.at(at(1))
    world.start(first)
    assert world.at(at(2)) == []  # still running at 02:00: no second job
    world.finish(first, at(2 + 20 / 60))
    assert world.at(at(2 + 20 / 60)) == []  # ended 02:20: the 02:00 run is not made up for
    assert world.reread(conn).next_run_at == at(3)
    [second] = world.at(at(3))
    assert second.scheduled_for == at(3)
    assert [j.id for j in world.sync_jobs(conn)] == [first.id, second.id]


def test_a_basic_run_that_came_due_while_its_job_ran_starts_when_it_ends(store: SqlJobStore) -> None:
    world = World(store)  # Airbyte: the previous start + the interval, or at once if that passed
    conn = world.connection("every 1h")
    [first] = world.at(at(1))
    world.start(first)
    assert world.at(at(2.5)) == []
    world.finish(first, at(2.75))
    [second] = world.at(at(2.75))
    assert second.scheduled_for == at(2)
    assert world.reread(conn).next_run_at == at(3.75)


def test_after_downtime_one_catch_up_run_not_one_per_missed_slot(store: SqlJobStore) -> None:
    world = World(store)
    conn = world.connection("every 10m")
    [job] = world.at(at(5))  # thirty slots passed while nothing ran
    assert job.scheduled_for == at(10 / 60)  # the run that was due; its lag is the downtime
    assert world.reread(conn).next_run_at == at(5 + 10 / 60)
    world.finish(job, at(5.05))
    assert world.at(at(5.1)) == []
    assert len(world.sync_jobs(conn)) == 1


def _night(world: World, conn: Connection, start: datetime, end: datetime) -> list[datetime]:
    """Passes every 5 minutes from ``start`` to ``end``, each job ending 2 minutes after it was
    made; the due times of the jobs made, after the catch-up run at ``start``."""
    [catch_up] = world.at(start)
    world.finish(catch_up, start + timedelta(minutes=2))
    moment = start
    while moment < end:
        moment += timedelta(minutes=5)
        for job in world.at(moment):
            world.finish(job, moment + timedelta(minutes=2))
    return [job.scheduled_for for job in world.sync_jobs(conn) if job.id != catch_up.id]


def test_an_hourly_cron_runs_every_hour_through_the_night_the_clocks_go_back(store: SqlJobStore) -> None:
    # Berlin, 25 October: 02:00-02:59 happens twice. Every real hour gets its run, none twice.
    world = World(store)
    conn = world.connection("cron 0 0 * * * ?", timezone="Europe/Berlin")
    due = _night(
        world, conn, datetime(2026, 10, 24, 21, 30, tzinfo=UTC), datetime(2026, 10, 25, 4, tzinfo=UTC)
    )
    assert due == [datetime(2026, 10, 24, 22, tzinfo=UTC) + timedelta(hours=n) for n in range(7)]


def test_a_daily_run_in_the_repeated_hour_runs_once(store: SqlJobStore) -> None:
    # New York, 1 November: 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST).
    world = World(store)
    conn = world.connection("cron 0 30 1 * * ?", timezone="America/New_York")
    due = _night(world, conn, datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 2, 8, tzinfo=UTC))
    assert due == [datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 2, 6, 30, tzinfo=UTC)]


def test_a_daily_run_at_a_time_the_clocks_skip_runs_an_hour_later(store: SqlJobStore) -> None:
    # New York, 8 March: 02:30 does not exist; the day keeps its run, at 03:30 EDT (07:30Z).
    world = World(store)
    conn = world.connection("cron 0 30 2 * * ?", timezone="America/New_York")
    due = _night(world, conn, datetime(2026, 3, 7, 4, tzinfo=UTC), datetime(2026, 3, 9, 8, tzinfo=UTC))
    assert due == [
        datetime(2026, 3, 7, 7, 30, tzinfo=UTC),
        datetime(2026, 3, 8, 7, 30, tzinfo=UTC),
        datetime(2026, 3, 9, 6, 30, tzinfo=UTC),
    ]


def test_a_clock_set_days_ahead_then_corrected_does_not_stop_the_syncs(store: SqlJobStore) -> None:
    # The host's clock was 3 days ahead, then NTP put it right: the runs planned meanwhile are
    # planned again from the right time, instead of waiting out the 3 days.
    world = World(store)
    basic = world.connection("every 1h", "basic")
    daily = world.connection("cron 0 0 12 * * ?", "daily")  # T0 is 12:00: next noon is at(24)
    for job in world.at(at(72.5)):  # 3 days ahead: one catch-up run each, as after downtime
        world.finish(job, at(72.6))
    assert world.reread(basic).next_run_at == at(73.5)
    world.clock.advance(-72 * HOUR)  # corrected: it is at(0.6)
    assert world.at(at(0.7)) == []
    assert world.reread(basic).next_run_at == at(1.7)  # from the corrected now, not at(73.5)
    assert world.reread(daily).next_run_at == at(24)
    [job] = world.at(at(1.7))
    assert (job.scope, job.scheduled_for) == (str(basic.id), at(1.7))
    # A scheduler started after the correction (the old one was stopped) does the same.
    world.finish(job, at(1.8))
    world.store.set_next_run(basic.id, at(2.7), at(80))
    assert Scheduler(world.service, SchedulerSettings(), world.clock).plan() == 1
    assert world.reread(basic).next_run_at == at(2.8)


def test_a_small_step_back_of_the_clock_makes_no_second_job(store: SqlJobStore) -> None:
    world = World(store)  # NTP steps of seconds, schedulers' clocks a little apart
    conn = world.connection("cron 0 0 * * * ?")
    [job] = world.at(at(1))
    world.finish(job, at(1) + timedelta(seconds=30))
    world.clock.advance(-60)
    assert world.at(at(1) - timedelta(seconds=10)) == []
    assert world.reread(conn).next_run_at == at(2)
    assert len(world.sync_jobs(conn)) == 1


def test_inactive_and_manual_connections_are_never_scheduled(store: SqlJobStore) -> None:
    world = World(store)
    paused = world.service.update_connection(world.connection("every 1h", "paused"), status="inactive")
    assert paused.next_run_at is None
    manual = world.connection("manual", "by-hand")
    assert manual.next_run_at is None
    # Inactive with a due time left in place (set by hand): the status alone keeps it from running.
    stale = world.connection("every 1h", "stale")
    store.update_connection(stale.id, status="inactive")
    assert world.at(at(48)) == []
    assert store.list_jobs() == []
    # Made active again: planned from now, not from the runs it missed.
    again = world.service.update_connection(world.reread(paused), status="active")
    assert again.next_run_at == at(49)


def test_a_schedule_change_plans_the_next_run_from_now(store: SqlJobStore) -> None:
    world = World(store)
    conn = world.connection("every 1d")
    world.clock.advance(2 * HOUR)
    changed = world.service.update_connection(
        conn, schedule=parse_schedule("cron 0 0 12 * * ?", "Europe/Berlin")
    )
    assert changed.next_run_at == at(23)  # tomorrow 12:00 in Berlin: 11:00Z (UTC+1 in January)
    assert changed.schedule == {
        "scheduleType": "cron",
        "cronExpression": "0 0 12 * * ?",
        "timezone": "Europe/Berlin",
    }


def test_the_same_schedule_sent_again_keeps_the_next_run(store: SqlJobStore) -> None:
    # API clients PATCH the whole connection (its unchanged schedule too) to rename it: that must
    # neither postpone an interval nor drop a run that is due.
    world = World(store)
    basic = world.connection("every 2h", "basic")
    world.clock.advance(1.5 * HOUR)
    renamed = world.service.update_connection(basic, schedule=parse_schedule("every 2 hours"), name="b2")
    assert (renamed.name, renamed.next_run_at) == ("b2", at(2))
    cron = world.connection("cron 0 0 * * * ?", "hourly")
    world.clock.advance(HOUR)  # 02:30: the 02:00 run is due, no pass has made it yet
    again = world.service.update_connection(cron, schedule=parse_schedule("cron 0 0 * * * ?"))
    assert again.next_run_at == at(2)
    assert sorted(job.scheduled_for for job in world.at(at(2.5))) == [at(2), at(2)]


def test_a_cron_that_would_never_run_is_refused_and_the_schedule_kept(store: SqlJobStore) -> None:
    # A Quartz year field in the past: saved, the connection would look scheduled and never sync.
    world = World(store)
    conn = world.connection("every 1h")
    with pytest.raises(InvalidSchedule, match="no run in the coming years"):
        world.service.update_connection(conn, schedule=parse_schedule("cron 0 0 12 1 1 ? 2025"))
    kept = world.reread(conn)
    assert (kept.schedule, kept.next_run_at) == (conn.schedule, at(1))
    # The year still to come is fine.
    later = world.service.update_connection(conn, schedule=parse_schedule("cron 0 0 12 1 1 ? 2027"))
    assert later.next_run_at == datetime(2027, 1, 1, 12, 0, tzinfo=T0.tzinfo)


def test_a_connection_failing_again_and_again_is_disabled_with_a_reason(store: SqlJobStore) -> None:
    world = World(store, SchedulerSettings(max_failed_jobs=3, max_failed_days=0))
    conn = world.connection("every 1h")
    store.add_webhook("http://127.0.0.1:9/hook", "json", ["disabled"])  # told only of the disable
    for hour in (1, 2, 3):
        [last] = world.at(at(hour))
        world.finish(last, at(hour + 0.1), succeed=False)
    assert world.at(at(4)) == []  # the fourth run is not started
    [event] = store.list_events()  # written with the disable, in its transaction
    assert (event.kind, event.connection_id, event.job_id) == ("disabled", conn.id, last.id)
    disabled = world.reread(conn)
    assert disabled.status == "inactive" and disabled.next_run_at is None
    assert disabled.status_reason is not None
    assert "after 3 failed sync jobs in a row" in disabled.status_reason
    assert world.scheduler.tick().disabled == []  # disabled once, not at every pass
    # Enabled again by a user: the reason goes, and the old failures no longer count.
    enabled = world.service.update_connection(disabled, status="active")
    assert (enabled.status, enabled.status_reason, enabled.next_run_at) == ("active", None, at(5))
    [job] = world.at(at(5))
    assert job.scheduled_for == at(5)


def test_a_success_breaks_the_failure_streak(store: SqlJobStore) -> None:
    world = World(store, SchedulerSettings(max_failed_jobs=2, max_failed_days=0))
    conn = world.connection("every 1h")
    for hour, succeed in ((1, False), (2, True), (3, False)):
        [job] = world.at(at(hour))
        world.finish(job, at(hour + 0.1), succeed=succeed)
    assert len(world.at(at(4))) == 1
    assert world.reread(conn).status == "active"


def test_only_failures_for_days_disables_the_connection(store: SqlJobStore) -> None:
    world = World(store, SchedulerSettings(max_failed_jobs=0, max_failed_days=2))
    conn = world.connection("every 1d")
    [job] = world.at(at(24))
    world.finish(job, at(24.5), succeed=False)
    [job] = world.at(at(48.5))
    world.finish(job, at(49), succeed=False)
    assert world.at(at(72.5)) == []  # the first failure is two days old now
    assert "only failed sync jobs for 2 days" in (world.reread(conn).status_reason or "")


def test_connections_from_before_the_scheduler_are_planned_at_start(store: SqlJobStore) -> None:
    world = World(store)
    # As a connection made by an older version: a schedule, no next run.
    conn = store.create_connection(
        "old",
        world.source.id,
        world.destination.id,
        {"streams": []},
        schedule={"scheduleType": "basic", "units": 2, "timeUnit": "hours"},
    )
    assert conn.next_run_at is None
    assert world.scheduler.plan() == 1
    assert world.reread(conn).next_run_at == at(2)
    assert world.scheduler.plan() == 0


def test_many_due_connections_in_one_pass_past_the_batch_size(store: SqlJobStore) -> None:
    world = World(store, SchedulerSettings(batch=4))
    made = [world.connection("every 1h", f"c{n}") for n in range(10)]
    # One is busy with a manual sync: it is left for a later pass, the others all run.
    world.service.enqueue_replication(made[3])
    created = world.at(at(1))
    assert sorted(int(job.scope or 0) for job in created) == sorted(c.id for c in made if c is not made[3])


def test_a_scheduler_with_a_stale_view_cannot_make_a_second_job_for_a_run(
    store: SqlJobStore, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scheduler B read the due runs, then A made the job and it ended before B got to it (no
    live job left to stop B). B's reads are frozen at that moment (a stand-in for the timing two
    processes produce only by chance); its writes are real, and find the run taken."""
    world = World(store)
    conn = world.connection("every 1h")
    other = open_store(store_url)  # scheduler B: its own store and connections to the database
    try:
        stale = other.due_runs(at(1), 10)
        assert [run.connection.id for run in stale] == [conn.id]
        [job] = world.at(at(1))
        world.finish(job, at(1.01))
        monkeypatch.setattr(other, "due_runs", lambda now, limit, after=None: [] if after else stale)
        scheduler_b = Scheduler(
            JobService(other, Settings(), clock=world.clock), SchedulerSettings(), world.clock
        )
        done = scheduler_b.tick(at(1.02))
        assert (done.created, done.taken) == ([], 1)
        assert [j.id for j in world.sync_jobs(conn)] == [job.id]
        assert world.reread(conn).next_run_at == at(2)
    finally:
        other.close()


def test_the_database_refuses_a_second_job_for_one_due_run(store: SqlJobStore) -> None:
    """The backstop under the compare-and-set: whatever code runs, one job per (scope, due time)."""
    world = World(store)
    conn = world.connection("every 1h")
    [job] = world.at(at(1))
    world.finish(job, at(1.1))
    values = {
        "type": "sync",
        "scope": str(conn.id),
        "config": {},
        "status": "pending",
        "created_at": at(1.2),
        "updated_at": at(1.2),
        "cancel_requested": False,
        "scheduled_for": at(1),
    }
    with pytest.raises(IntegrityError), store.engine.begin() as db:
        db.execute(jobs.insert().values(**values))
    with store.engine.begin() as db:  # another due time, or none (a manual sync), is fine
        db.execute(jobs.insert().values(**{**values, "scheduled_for": None, "status": "succeeded"}))
        db.execute(jobs.insert().values(**{**values, "scheduled_for": at(2), "status": "succeeded"}))


def test_a_run_made_due_while_its_connection_is_deleted_leaves_no_job_to_run(store: SqlJobStore) -> None:
    """A pass that makes a due run's job while the connection is being deleted. The delete read
    the connection's live jobs (none), the pass made the job, then the delete removed the row:
    a pending sync of a connection that was gone, which an engine ran (records written to the
    destination, then three attempts failed saving the state). Now the job is cancelled with
    the delete, or never made.

    Nothing real pauses a delete between two statements, so an event hook runs the other
    scheduler's pass there: once the delete has read the live jobs, unless that read is in the
    transaction that deleted the row, which no other writer can come between."""
    world = World(store)
    conn = world.connection("every 1h")
    other = Scheduler(world.service, SchedulerSettings(), world.clock)
    world.clock.advance(HOUR)  # due
    deleting: list[object] = []
    passes: list[int] = []

    def between(db: Any, _cursor: Any, statement: str, *_: Any) -> None:
        text = " ".join(statement.split()).lower()
        if text.startswith("delete from connections"):
            deleting.append(db.get_transaction())
        elif text.startswith("select jobs.id from jobs") and "scope" in text and not passes:
            outside = db.get_transaction() not in deleting  # a pass cannot come inside
            passes.append(len(other.tick().created) if outside else 0)

    sa_event.listen(store.engine, "after_cursor_execute", between)
    try:
        store.delete_connection(conn.id)
    finally:
        sa_event.remove(store.engine, "after_cursor_execute", between)
    assert world.scheduler.tick().created == [], passes
    live = store.live_job(str(conn.id))
    assert live is None, f"job {live.id} of deleted connection {conn.id} is {live.status}"
