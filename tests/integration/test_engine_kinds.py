"""What every engine must do, tested the same way on each: ``ferryman worker`` processes of the
engine under test (see engine_kinds.py) run jobs queued in a real store, with real connectors.

Connections are set up in this process (a local engine runs the discover that creates one);
everything after that is the workers'."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from pathlib import Path

import psutil
import pytest

from ferryman.jobs.failures import FailureType
from ferryman.jobs.states import AttemptStatus, JobStatus, JobType
from ferryman.service import JobService
from ferryman.store import open_store
from ferryman.store.base import JobStore
from tests.conftest import scripted_source
from tests.integration.engine_kinds import (
    Workers,
    engine_env,
    engine_kind,
    wait_until_terminal,
    workers_for,
)
from tests.integration.test_engine import (
    bench_connection,
    max_overlap,
    postgres_url,
    rows,
    scripted_connection,
    service_for,
    settings,
)

__all__ = ["engine_env", "engine_kind", "postgres_url", "workers_for"]  # fixtures used here


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ferryman.db'}"


def setup_service(url: str, home: Path) -> JobService:
    """A service with a local engine of this process: only to create connections (their discover)."""
    return service_for(open_store(url), home)


def queue_only(store: JobStore, home: Path) -> JobService:
    """What `connections sync --detach`, `jobs cancel` and the API use: the store, no engine."""
    return JobService(store, settings(home))


def test_twelve_syncs_with_three_sync_workers_never_run_more_than_three_at_once(
    url: str, tmp_path: Path, workers_for: type[Workers]
) -> None:
    home = tmp_path / "home"
    setup = setup_service(url, home)
    names = [bench_connection(setup, f"c{i}", home, 20_000) for i in range(12)]
    store = open_store(url)
    jobs = [queue_only(store, home).enqueue_replication(name) for name in names]
    workers = workers_for(url)
    workers.start(MAX_SYNC_WORKERS="3")

    finished = wait_until_terminal(store, [job.id for job in jobs], workers, timeout_s=300)

    assert [job.status for job in finished] == [JobStatus.SUCCEEDED] * 12
    attempts = [a for job in jobs for a in store.list_attempts(job.id)]
    assert len(attempts) == 12
    assert max_overlap(attempts) == 3  # never more, and the limit was used
    for name in names:
        assert rows(home / f"{name}.duckdb") == (20_000, 20_000)


def test_jobs_of_one_type_start_in_the_order_they_were_queued(
    url: str, workers_for: type[Workers], engine_kind: str
) -> None:
    if engine_kind == "temporal":
        pytest.skip("Temporal does not promise FIFO across workflows (docs/temporal.md)")
    store = open_store(url)
    jobs = [store.enqueue(JobType.SPEC, None, {"connector": "builtin:source-bench"}) for _ in range(8)]
    workers = workers_for(url)
    workers.start(MAX_SPEC_WORKERS="1")

    wait_until_terminal(store, [job.id for job in jobs], workers)

    attempts = [store.list_attempts(job.id) for job in jobs]
    assert [len(a) for a in attempts] == [1] * 8
    started = [a[0].created_at for a in attempts]
    assert started == sorted(started)  # first queued, first started
    assert max_overlap([a[0] for a in attempts]) == 1


def test_a_config_error_fails_the_job_at_once(url: str, tmp_path: Path, workers_for: type[Workers]) -> None:
    home = tmp_path / "home"
    bench_connection(setup_service(url, home), "bad", home, 10)
    store = open_store(url)
    source = store.get_actor("source", "bad-src")
    store.update_actor_config(source.id, {"count": "many"})  # source-bench refuses it: config_error
    job = queue_only(store, home).enqueue_replication("bad")
    workers = workers_for(url)
    workers.start()

    (finished,) = wait_until_terminal(store, [job.id], workers)

    assert finished.status is JobStatus.FAILED
    (attempt,) = store.list_attempts(job.id)  # never retried
    assert attempt.failure_summary is not None
    assert attempt.failure_summary["failures"][0]["type"] == FailureType.CONFIG_ERROR


def test_a_failing_sync_is_retried_after_backing_off_and_fails_after_three_attempts(
    url: str, tmp_path: Path, workers_for: type[Workers]
) -> None:
    home = tmp_path / "home"
    scripted_connection(setup_service(url, home), tmp_path, [{"records": 1, "stream": "users"}, {"exit": 1}])
    store = open_store(url)
    job = queue_only(store, home).enqueue_replication("s")
    workers = workers_for(url)
    workers.start(FERRYMAN_RETRY_BACKOFF_MIN_S="1")  # 1 s, then 3 s (base 3)

    (finished,) = wait_until_terminal(store, [job.id], workers)

    assert finished.status is JobStatus.FAILED  # SYNC_JOB_MAX_ATTEMPTS = 3
    attempts = store.list_attempts(job.id)
    assert [a.number for a in attempts] == [0, 1, 2]
    assert all(a.status is AttemptStatus.FAILED for a in attempts)
    waits = [
        (later.created_at - earlier.ended_at).total_seconds()
        for earlier, later in itertools.pairwise(attempts)
        if earlier.ended_at is not None
    ]
    assert len(waits) == 2
    assert waits[0] >= 1 and waits[1] >= 3  # never sooner than the backoff


def test_cancel_in_each_state(url: str, tmp_path: Path, workers_for: type[Workers]) -> None:
    home = tmp_path / "home"
    steps = [
        {"records": 3, "stream": "users"},
        {"state": {"name": "users"}},
        {"forever": {"stream": "users"}},
    ]
    scripted_connection(setup_service(url, home), tmp_path, steps)
    store = open_store(url)
    service = queue_only(store, home)
    connection = store.get_connection("s")

    # pending: cancelled at once, and no worker ever runs it
    pending = service.enqueue_replication("s")
    assert service.cancel(pending.id).status is JobStatus.CANCELLED
    workers = workers_for(url)
    workers.start(FERRYMAN_RETRY_BACKOFF_MIN_S="3600")

    # running: connectors stopped, attempt failed with manual_cancellation, committed state kept
    running = service.enqueue_replication("s")
    wait_for_state(store, connection.id, workers, "no state was committed")
    service.cancel(running.id)
    (cancelled,) = wait_until_terminal(store, [running.id], workers, timeout_s=60)
    assert cancelled.status is JobStatus.CANCELLED
    (attempt,) = store.list_attempts(running.id)
    assert attempt.status is AttemptStatus.FAILED
    assert attempt.failure_summary is not None
    assert attempt.failure_summary["failures"][0]["type"] == FailureType.MANUAL_CANCELLATION
    assert store.get_state(connection.id)[0]["stream"]["stream_state"] is not None
    assert store.list_attempts(pending.id) == []

    # incomplete, waiting an hour for its retry: cancelled at once
    store.update_actor_config(store.get_actor("source", "s-src").id, {"steps": [{"exit": 1}]})
    waiting = service.enqueue_replication("s")
    deadline = time.monotonic() + 60
    while store.get_job(waiting.id).status is not JobStatus.INCOMPLETE and time.monotonic() < deadline:
        assert not store.get_job(waiting.id).status.terminal
        time.sleep(0.05)
    assert service.cancel(waiting.id).status is JobStatus.CANCELLED
    assert len(store.list_attempts(waiting.id)) == 1
    workers.stop_all()
    assert store.get_job(waiting.id).status is JobStatus.CANCELLED
    assert len(store.list_attempts(waiting.id)) == 1  # its retry never ran


def wait_for_state(store: JobStore, connection_id: int, workers: Workers, failure: str) -> None:
    deadline = time.monotonic() + 60
    while not store.get_state(connection_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.get_state(connection_id), f"{failure}: {workers.stderr()}"


def connector_processes(job_id: int, home: Path) -> list[psutil.Process]:
    """Processes started for this job's attempts (connectors carry WORKER_JOB_ID) by this test's
    workers: other tests on the host (other checkouts too) number their jobs from 1 as well."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error):
            environ = proc.environ() if proc.info["status"] != psutil.STATUS_ZOMBIE else {}
            if environ.get("WORKER_JOB_ID") == str(job_id) and environ.get("FERRYMAN_HOME") == str(home):
                found.append(proc)
    return found


def test_sigkill_of_the_worker_running_a_sync_hands_it_to_the_other_and_loses_no_record(
    engine_kind: str, postgres_url: str, tmp_path: Path, workers_for: type[Workers]
) -> None:
    home = tmp_path / "home"
    bench_connection(setup_service(postgres_url, home), "big", home, 1_000_000, state_every=1000)
    store = open_store(postgres_url)
    connection = store.get_connection("big")
    workers = workers_for(postgres_url)
    # Temporal takes the killed worker's attempt for lost when its heartbeats stop for this long
    # (30 s unless set); the local kind sees the dead process at once.
    heartbeats = {"FERRYMAN_TEMPORAL_HEARTBEAT_S": "2", "FERRYMAN_TEMPORAL_HEARTBEAT_TIMEOUT_S": "10"}
    heartbeats = heartbeats if engine_kind == "temporal" else {}
    pair = {worker.engine_id: worker for worker in (workers.start(**heartbeats), workers.start(**heartbeats))}
    job = queue_only(store, home).enqueue_replication("big")

    wait_for_state(store, connection.id, workers, "no worker committed a state")
    (first,) = store.list_attempts(job.id)
    doomed = pair[str(first.engine_id)]
    workers.kill(doomed)

    (finished,) = wait_until_terminal(store, [job.id], workers, timeout_s=300)

    assert finished.status is JobStatus.SUCCEEDED
    first, second = store.list_attempts(job.id)
    assert first.status is AttemptStatus.FAILED and first.failure_summary is not None
    if engine_kind == "local":  # on this host and dead: recovered without waiting for staleness
        assert "is gone" in first.failure_summary["failures"][0]["message"]
    assert second.status is AttemptStatus.SUCCEEDED
    assert second.engine_id != first.engine_id  # the other worker ran it
    assert (second.output or {})["records_emitted"] < 1_000_000  # it resumed from the committed state
    assert rows(home / "big.duckdb") == (1_000_000, 1_000_000)
    assert connector_processes(job.id, home) == []  # the dead worker's connectors did not live on


def test_two_workers_on_one_postgres_share_twenty_jobs_and_run_none_twice(
    postgres_url: str, workers_for: type[Workers], tmp_path: Path
) -> None:
    store = open_store(postgres_url)
    workers = workers_for(postgres_url)
    # Each spec takes a third of a second: twenty of them, two at a time, keep one worker busy
    # for over three seconds, far past the other's next poll (half a second). A spec that ends at
    # once let the first worker run all twenty on a loaded host before the second looked.
    script = scripted_source(tmp_path, "slow-spec")
    slow = json.dumps([{"sleep": 0.35}, {"spec": {"connectionSpecification": {"type": "object"}}}])
    for _ in range(2):
        workers.start(MAX_SPEC_WORKERS="2", SCRIPTED_SPEC_STEPS=slow)
    # Queued once both are up: on a slow host the first could otherwise run them all before the
    # second has started.
    jobs = [store.enqueue(JobType.SPEC, None, {"connector": f"exec:{script}"}) for _ in range(20)]

    wait_until_terminal(store, [job.id for job in jobs], workers)
    workers.stop_all()

    attempts = [store.list_attempts(job.id) for job in jobs]
    assert all(store.get_job(job.id).status is JobStatus.SUCCEEDED for job in jobs)
    assert [len(a) for a in attempts] == [1] * 20  # none ran twice
    assert len({a[0].engine_id for a in attempts}) == 2  # both workers took their share


def test_the_database_going_away_mid_sync_is_told_in_lines_and_the_sync_carries_on_to_the_end(
    engine_kind: str, postgres_url: str, tmp_path: Path, workers_for: type[Workers]
) -> None:
    """Postgres refuses connections while a sync runs, and the destination confirms a state then:
    the worker says so in one line each time, never with a traceback (on Temporal the SDK printed
    one for every failed activity, and a heartbeat that could not read the state stopped the
    running attempt), and the sync goes on, keeping its confirmed state, which it saves once
    Postgres is back. One attempt ends the job with every record (the attempt used to fail at the
    first stats or state write that met the outage, and a retry read everything again)."""
    import psycopg

    home = tmp_path / "home"
    started, go, sent, again = (tmp_path / name for name in ("started", "go", "sent", "again"))
    steps = [
        {"records": 5},
        {"state": {"name": "users"}},
        {"touch": str(started)},
        {"wait_for_file": str(go), "timeout": 300},
        {"records": 5},
        {"state": {"name": "users"}},  # confirmed while the database is away
        {"touch": str(sent)},
        {"wait_for_file": str(again), "timeout": 300},
        {"records": 5},
        {"state": {"name": "users"}},
    ]
    scripted_connection(setup_service(postgres_url, home), tmp_path, steps)
    store = open_store(postgres_url)
    database = postgres_url.rsplit("/", 1)[1]
    workers = workers_for(postgres_url)
    workers.start(FERRYMAN_TEMPORAL_HEARTBEAT_S="0.3")
    job = queue_only(store, home).enqueue_replication("s")
    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    try:
        deadline = time.monotonic() + 90
        while not started.exists():
            assert time.monotonic() < deadline, workers.stderr()
            time.sleep(0.05)
        (attempt,) = store.list_attempts(job.id)
        log = Path(attempt.log_path)
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
        )
        # Temporal: the activity's heartbeat met the outage; local: the engine's store heartbeat.
        met = "heartbeat of job" if engine_kind == "temporal" else "cannot be used"
        while met not in workers.stderr():
            assert time.monotonic() < deadline, workers.stderr()
            time.sleep(0.05)
        go.touch()
        while "saving state failed" not in log.read_text():  # the state of step 2 met the outage
            assert time.monotonic() < deadline, workers.stderr()
            time.sleep(0.05)
        while not sent.exists():
            assert time.monotonic() < deadline, workers.stderr()
            time.sleep(0.05)
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        again.touch()
        store = open_store(postgres_url)  # the test's own connections were cut too
        (ended,) = wait_until_terminal(store, [job.id], workers)
    finally:
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        admin.close()
        workers.close()
    said = workers.stderr()
    assert ended.status is JobStatus.SUCCEEDED, said
    assert [a.status for a in store.list_attempts(job.id)] == [AttemptStatus.SUCCEEDED], said
    assert "Traceback" not in said and "Completing activity as failed" not in said, said
    written = log.read_text()
    assert written.count("saving state failed") == 1, written  # one line per outage, not per try
    assert "Traceback" not in written, written
    (saved,) = store.get_state(store.get_connection("s").id)
    assert saved["stream"]["stream_state"] == {"cursor": 15}  # the last state, saved after the outage
    lines = (tmp_path / "out").glob("**/*.jsonl")
    assert sum(len(path.read_text().splitlines()) for path in lines) == 15
