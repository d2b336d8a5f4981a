"""What ``/metrics`` reads from the store (store/tallies.py), on SQLite and Postgres: jobs moved
through the store's own operations at known times, then the aggregate queries' figures."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic import command

from ferryman.jobs.states import JobType
from ferryman.store import SqlJobStore, StreamStat, open_store
from ferryman.store.migrate import alembic_config
from ferryman.store.schema import UtcDateTime, attempts, jobs
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


def _sync(store: SqlJobStore, scope: str, records: int, seconds: float | None) -> int:
    """A sync with one stream of ``records`` records: ended after ``seconds``, or left running."""
    job = store.enqueue(JobType.SYNC, scope, {})
    ((_, attempt),) = store.claim("engine-b", ALL_SLOTS, T0, log_path, only=[job.id])
    store.save_progress(
        attempt.id, [StreamStat(attempt.id, "users", None, records, records * 10, records, None)]
    )
    if seconds is not None:
        store.succeed_attempt(attempt, {}, later(seconds))
    return attempt.id


def test_ended_attempts_are_folded_once_and_every_figure_stays_exact(store: SqlJobStore) -> None:
    """A scrape folds what ended into tally_seals; the figures are those of every row, folded or
    not, however often it is scraped and whatever ends in between."""
    _sync(store, "1", 10, 2)
    running = _sync(store, "2", 7, None)
    first = store.tallies()
    (streams,) = first.streams
    assert (streams.records_emitted, streams.bytes_emitted, streams.records_committed) == (17, 170, 17)
    with store.engine.connect() as conn:
        marks = dict(conn.execute(sa.select(attempts.c.id, attempts.c.tally_batch)).all())
    assert marks[running] is None and all(batch is not None for id, batch in marks.items() if id != running)
    for _ in range(2):  # folded once: a second scrape counts nothing twice
        again = store.tallies()
        assert (again.durations, again.streams) == (first.durations, first.streams)
    (attempt,) = [a for a in store.list_attempts(_job_of(store, running))]
    store.succeed_attempt(attempt, {}, later(400))
    _sync(store, "3", 5, 20)
    assert store.fold_tallies(limit=1) == 1  # folds in bounded batches; the rest is read unfolded
    last = store.tallies()
    (streams,) = last.streams
    assert (streams.records_emitted, streams.bytes_emitted, streams.records_committed) == (22, 220, 22)
    (synced,) = last.durations
    assert (synced.histogram.count, synced.histogram.cumulative) == (3, (0, 1, 1, 2, 2, 3, 3, 3))
    assert abs(synced.histogram.sum_s - 422) < 0.01


def test_a_scrape_reads_no_folded_attempt_or_stream_stat(store: SqlJobStore) -> None:
    """What a scrape costs follows the live part of the store, not its history: once folded, the
    ended attempts and their stream stats are not read again (SQLite's plans say so)."""
    if store.dialect != "sqlite":
        pytest.skip("query plans are read from SQLite; Postgres runs the same statements")
    _sync(store, "1", 10, 2)
    _sync(store, "2", 7, None)
    store.tallies()
    statements: list[tuple[str, object]] = []

    def seen(conn: object, cursor: object, statement: str, parameters: object, *rest: object) -> None:
        statements.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        store.tallies()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)
    scans = []
    with store.engine.connect() as conn:
        for statement, parameters in statements:
            if statement.lstrip().upper().startswith("SELECT"):
                plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()  # type: ignore[arg-type]
                scans += [row[3] for row in plan if row[3].startswith(("SCAN attempts", "SCAN stream_stats"))]
    assert (
        len(statements) >= 5
        and scans
        and all(scan == "SCAN attempts USING INDEX ix_attempts_untallied" for scan in scans)
    )


def _job_of(store: SqlJobStore, attempt_id: int) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(attempts.c.job_id).where(attempts.c.id == attempt_id)).scalar_one())


def test_a_store_from_before_the_fold_shows_the_same_figures_after_the_upgrade(store_url: str) -> None:
    """Migration 0011 rewrites no row: the attempts ended before it are folded by the first scrapes."""
    with open_store(store_url) as old:
        _sync(old, "1", 10, 2)
        _sync(old, "2", 7, None)
        config = alembic_config()
        with old.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0010")
    with open_store(store_url) as upgraded:
        tallies = upgraded.tallies()
        (streams,) = tallies.streams
        assert (streams.records_emitted, streams.records_committed) == (17, 17)
        (synced,) = tallies.durations
        assert (synced.histogram.count, synced.histogram.cumulative) == (1, (0, 1, 1, 1, 1, 1, 1, 1))
        assert upgraded.fold_tallies() == 0  # the scrape folded the one ended attempt
