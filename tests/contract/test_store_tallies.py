"""What ``/metrics`` reads from the store (store/tallies.py), on SQLite and Postgres: jobs moved
through the store's own operations at known times, then the aggregate queries' figures."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from ferryman.jobs.states import JobType
from ferryman.store import SqlJobStore, StreamStat
from ferryman.store.schema import UtcDateTime, jobs
from ferryman.store.tallies import DURATION_BUCKETS_S, LAG_BUCKETS_S, SCHEDULED_FOR
from tests.contract.store_support import ALL_SLOTS, T0, failure, later, log_path, store, store_url

__all__ = ["store", "store_url"]  # fixtures


def _run(store: SqlJobStore, job_type: JobType, scope: str | None, seconds: float, ok: bool = True) -> None:
    """One job, claimed at T0 and ended ``seconds`` later: succeeded, or failed for good."""
    job = store.enqueue(job_type, scope, {"connector": "builtin:source-bench"})
    ((_, attempt),) = store.claim("engine-b", ALL_SLOTS, T0, log_path, only=[job.id])
    if ok:
        store.succeed_attempt(attempt, {}, later(seconds))
    else:
        store.fail_attempt(attempt, None, failure(), later(seconds))
        store.fail_job(job.id)


def _set_created(store: SqlJobStore, job_id: int, when: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(created_at=when))


def test_jobs_by_type_and_status_and_the_oldest_pending(store: SqlJobStore) -> None:
    _run(store, JobType.SPEC, "a", 2)
    _run(store, JobType.SPEC, "b", 3)
    _run(store, JobType.CHECK_SOURCE, "source:1", 4, ok=False)
    old = store.enqueue(JobType.DISCOVER, "source:1", {})
    store.enqueue(JobType.DISCOVER, "source:2", {})
    _set_created(store, old.id, T0 - timedelta(hours=1))
    tallies = store.tallies()
    counts = {(count.type, count.status): count.count for count in tallies.jobs}
    assert counts == {
        ("spec", "succeeded"): 2,
        ("check_connection_source", "failed"): 1,
        ("discover_schema", "pending"): 2,
    }
    assert tallies.oldest_pending == {"discover_schema": T0 - timedelta(hours=1)}


def test_attempt_durations_are_bucketed_by_the_database(store: SqlJobStore) -> None:
    _run(store, JobType.SPEC, "a", 0.5)
    _run(store, JobType.SPEC, "b", 4)
    _run(store, JobType.SPEC, "c", 4000)
    _run(store, JobType.CHECK_SOURCE, "source:1", 20, ok=False)
    store.enqueue(JobType.SPEC, "running", {})
    store.claim("engine-b", ALL_SLOTS, T0, log_path)  # running: no duration yet
    by_key = {(tally.type, tally.status): tally.histogram for tally in store.tallies().durations}
    assert set(by_key) == {("spec", "succeeded"), ("check_connection_source", "failed")}
    spec = by_key["spec", "succeeded"]
    assert spec.bounds == DURATION_BUCKETS_S == (1, 5, 15, 60, 300, 900, 3600, 10800)
    assert spec.cumulative == (1, 2, 2, 2, 2, 2, 2, 3)
    assert spec.count == 3
    assert abs(spec.sum_s - 4004.5) < 0.01
    check = by_key["check_connection_source", "failed"]
    assert check.cumulative == (0, 0, 0, 1, 1, 1, 1, 1)
    assert abs(check.sum_s - 20) < 0.01


def test_records_and_bytes_summed_over_every_stream_of_every_attempt(store: SqlJobStore) -> None:
    for scope, streams in (("1", [("users", 10, 100), ("orders", 5, 50)]), ("2", [("users", 7, None)])):
        job = store.enqueue(JobType.SYNC, scope, {})
        ((_, attempt),) = store.claim("engine-b", ALL_SLOTS, T0, log_path, only=[job.id])
        stats = [StreamStat(attempt.id, name, None, n + 1, 999, n, size) for name, n, size in streams]
        store.save_stream_stats(attempt.id, stats)
        store.succeed_attempt(attempt, {}, later(1))
    (sync,) = store.tallies().streams
    assert (sync.type, sync.records_committed, sync.bytes_committed) == ("sync", 22, 150)
    assert (sync.records_emitted, sync.bytes_emitted) == (25, 2997)


def test_scheduler_lag_over_the_scheduled_jobs(store: SqlJobStore) -> None:
    empty = store.tallies().lag
    assert empty is not None and empty.histogram.count == 0 and empty.last_s is None
    stamp = sa.text(f"UPDATE jobs SET created_at = :created, {SCHEDULED_FOR} = :due WHERE id = :id")
    stamp = stamp.bindparams(
        sa.bindparam("created", type_=UtcDateTime()), sa.bindparam("due", type_=UtcDateTime())
    )
    lags = [0.5, 2, 40, 7]  # the last created is the newest
    for number, lag in enumerate(lags):
        job = store.enqueue(JobType.SYNC, str(number), {})
        created = T0 + timedelta(minutes=number)
        with store.engine.begin() as conn:
            conn.execute(stamp, {"id": job.id, "created": created, "due": created - timedelta(seconds=lag)})
    store.enqueue(JobType.SPEC, None, {})  # not scheduled: not counted
    lag = store.tallies().lag
    assert lag is not None
    assert lag.histogram.bounds == LAG_BUCKETS_S == (1, 5, 15, 30, 60, 300, 900, 3600)
    assert lag.histogram.cumulative == (1, 2, 3, 3, 4, 4, 4, 4)
    assert lag.histogram.count == 4
    assert abs(lag.histogram.sum_s - 49.5) < 0.01
    assert lag.last_s is not None and abs(lag.last_s - 7) < 0.01
