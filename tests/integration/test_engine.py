"""The local engine in this process, with real connectors and a real store: what only it does
(a manual clock, a service without an engine, a store that goes away). The behaviour both engines
share is tested over both in test_engine_kinds.py."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ferryman.clock import ManualClock
from ferryman.engines.local import LocalEngine
from ferryman.errors import UserInputError, WorkerError
from ferryman.jobs.retry import RetryPolicy
from ferryman.jobs.states import AttemptStatus, JobStatus, JobType
from ferryman.service import JobService
from ferryman.settings import Settings
from ferryman.store import SqlJobStore, open_store
from ferryman.store.base import Attempt, JobStore
from ferryman.store.schema import jobs
from tests.conftest import scripted_destination, scripted_source, short_lifecycle

HERE = Path(__file__).parent
LIMITS = {"spec": 5, "check": 5, "discover": 5, "sync": 5}


def settings(home: Path) -> Settings:
    return Settings(home=home, lifecycle=short_lifecycle())


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return open_store(f"sqlite:///{tmp_path / 'ferryman.db'}")


def service_for(store: JobStore, home: Path, **engine: Any) -> JobService:
    config = settings(home)
    options = {"limits": LIMITS, "retry": RetryPolicy(backoff_min_s=0), "heartbeat_interval_s": 0.2, **engine}
    return JobService(store, config, LocalEngine(store, config, poll_interval_s=0.05, **options))


def bench_connection(service: JobService, name: str, home: Path, count: int, **source: Any) -> str:
    service.create_actor("source", f"{name}-src", "builtin:source-bench", {"count": count, **source})
    database = home / f"{name}.duckdb"
    service.create_actor("destination", f"{name}-dst", "builtin:destination-duckdb", {"path": str(database)})
    service.create_connection(name, f"{name}-src", f"{name}-dst")
    return name


def rows(database: Path, table: str = "stream_0") -> tuple[int, int]:
    with duckdb.connect(str(database), read_only=True) as db:
        total, distinct = db.execute(f'select count(*), count(distinct id) from "{table}"').fetchall()[0]
    return int(total), int(distinct)


def max_overlap(attempts: list[Attempt]) -> int:
    events = sorted(
        [(a.created_at, 1) for a in attempts] + [(a.ended_at, -1) for a in attempts if a.ended_at]
    )
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_a_sync_this_process_runs_is_queued_already_started(store: JobStore, tmp_path: Path) -> None:
    """No moment where the job is pending: a command killed right after queueing must not leave
    a job that no engine will ever claim (tests/e2e/test_cli_wedged.py shows the recovery)."""
    service = service_for(store, tmp_path / "home")
    bench_connection(service, "now", tmp_path, 10)
    job = service.enqueue_replication("now", here=True)
    assert job.status is JobStatus.RUNNING
    [attempt] = store.list_attempts(job.id)
    assert (attempt.status, attempt.engine_id) == (AttemptStatus.RUNNING, service._engine().engine_id)
    assert service.run(job).status is JobStatus.SUCCEEDED
    queued = service.enqueue_replication("now")  # for a worker elsewhere: pending, as before
    assert queued.status is JobStatus.PENDING and store.list_attempts(queued.id) == []
    store.request_cancel(queued.id)


def test_a_service_without_an_engine_queues_jobs_for_the_engine_that_serves_the_queue(
    store: JobStore, tmp_path: Path
) -> None:
    bench_connection(service_for(store, tmp_path), "queued", tmp_path, 100)
    queue_only = JobService(store, settings(tmp_path))  # as an API served with --no-engine

    job = queue_only.enqueue_replication("queued")
    with pytest.raises(WorkerError, match="no engine"):
        queue_only.run(job)

    assert queue_only.recover_abandoned() == []
    assert store.get_job(job.id).status is JobStatus.PENDING  # nobody ran it behind our back
    (finished,) = service_for(store, tmp_path)._engine().run_jobs([job.id], timeout_s=60)
    assert finished.status is JobStatus.SUCCEEDED
    assert rows(tmp_path / "queued.duckdb") == (100, 100)


def test_a_bug_of_ours_fails_the_attempt_and_leaves_its_traceback_masked_in_the_attempt_log(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception in the engine fails the attempt with one line (its type and
    message); its traceback goes to the attempt's log, where `jobs logs` shows it for a bug
    report, with the config's secrets masked. A bug cannot be made by a real part once it is
    fixed, so one is patched in (where the sync's stream stats are built)."""
    secret = "s3cr3t-key-4242"
    service = service_for(store, tmp_path, retry=RetryPolicy(backoff_min_s=0, sync_max_attempts=1))
    bench_connection(service, "bug", tmp_path, 10, api_key=secret)

    def broken(*_: Any) -> Any:
        raise TypeError(f"a bug of ours, holding {secret}")

    monkeypatch.setattr("ferryman.engines.execution._stream_stats", broken)
    job = service.run(service.enqueue_replication("bug"))

    assert job.status is JobStatus.FAILED
    [attempt] = store.list_attempts(job.id)
    assert attempt.failure_summary is not None
    [failure] = attempt.failure_summary["failures"]
    assert failure["message"] == "TypeError: a bug of ours, holding **********"
    log = Path(attempt.log_path).read_text()
    assert "platform ERROR unexpected error in Ferryman" in log
    assert "platform ERROR Traceback (most recent call last):" in log
    assert "in broken" in log and "TypeError: a bug of ours, holding **********" in log
    assert secret not in log


def scripted(tmp_path: Path) -> str:
    """The scripted test source as an executable, for an exec: reference."""
    return f"exec:{scripted_source(tmp_path)}"


def scripted_connection(service: JobService, tmp_path: Path, steps: list[dict[str, Any]]) -> str:
    source = service.create_actor("source", "s-src", scripted(tmp_path), {})  # discovers one stream
    service.create_actor("destination", "s-dst", "builtin:destination-jsonl", {"path": str(tmp_path / "out")})
    service.create_connection("s", "s-src", "s-dst")
    service.store.update_actor_config(source.id, {"steps": steps})  # what its reads will do
    return "s"


def test_a_retry_runs_the_config_the_connector_handed_back(store: JobStore, tmp_path: Path) -> None:
    """A source that rotates its credential (a CONTROL config update: a single-use OAuth refresh
    token, say) and then fails: the old credential no longer works, so the retry must run the new
    config, as Airbyte reads each attempt's config afresh. Before, every attempt ran the config
    the job was queued with: the retry sent the revoked token again, and so did every later one."""
    service = service_for(store, tmp_path)
    rotated = {"token": "rotated-2", "read_steps": [{"records": 3}, {"state": {"name": "users"}}]}
    # With the original token the source rotates it again and fails: what a revoked token does.
    steps = [{"control_config": rotated}, {"records": 1}, {"exit": 1}]
    scripted_connection(service, tmp_path, steps)
    source = store.get_actor("source", "s-src")
    store.update_actor_config(source.id, {"token": "original-1", "steps": steps})

    job = service.run(service.enqueue_replication("s"))

    assert job.status is JobStatus.SUCCEEDED
    assert [a.status for a in store.list_attempts(job.id)] == [AttemptStatus.FAILED, AttemptStatus.SUCCEEDED]
    assert store.get_actor("source", "s-src").config == rotated
    assert store.get_job(job.id).config["source"]["config"] == rotated  # what the retry ran


def test_a_mapping_that_sends_two_streams_to_one_is_refused_before_it_saves_a_wrong_state(
    store: JobStore, tmp_path: Path
) -> None:
    """Two schemas' ``users`` with namespace ``destination`` (the public API's default) both go
    to ``users``: the destination echoes one state per stream under the same name, so before,
    schema a's cursor was saved as schema b's (b's next sync skipping what lay between) and a's
    was lost. Creating such a connection is refused; one stored before the check (or changed
    since) fails its job as a config error, before any connector runs."""
    service = service_for(store, tmp_path)
    stream = {"json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]}
    catalog = {"streams": [{"name": "users", "namespace": ns, **stream} for ns in ("a", "b")]}
    steps: list[dict[str, Any]] = []
    for ns, count in (("b", 2), ("a", 9)):
        steps += [{"records": count, "stream": "users", "namespace": ns}]
        steps += [{"state": {"name": "users", "namespace": ns}}]
    service.create_actor(
        "source", "pg", scripted(tmp_path), {"discover_steps": [{"catalog": catalog}], "steps": steps}
    )
    echo = scripted_destination(tmp_path)
    service.create_actor("destination", "echo", f"exec:{echo}", {"output": str(tmp_path / "got")})

    with pytest.raises(
        UserInputError, match=r"streams 'a\.users' and 'b\.users' would both be written to 'users'"
    ):
        service.create_connection("two", "pg", "echo", namespace_definition="destination")
    kept = service.create_connection("two", "pg", "echo")  # namespace source: a.users, b.users
    stored = store.update_connection(kept.id, namespace_definition="destination")  # past the check
    job = service.run(service.enqueue_replication(stored))

    assert job.status is JobStatus.FAILED
    (attempt,) = store.list_attempts(job.id)  # a config error: not retried
    assert attempt.failure_summary is not None
    (failure,) = attempt.failure_summary["failures"]
    assert failure["type"] == "config_error", failure
    assert "streams 'a.users' and 'b.users' would both be written to 'users'" in failure["message"]
    assert store.get_state(stored.id) == []
    assert not (tmp_path / "got").exists()  # nothing ran


def backoff_over(store: SqlJobStore, job_id: int) -> None:
    """As if the job's backoff had passed by the store's clock: its due time set to long ago (a
    test cannot move the database's clock, only what it compares with it)."""
    with store.engine.begin() as conn:
        long_ago = datetime(2000, 1, 1, tzinfo=UTC)
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(next_attempt_at=long_ago))


def test_backoff_between_attempts_is_counted_by_the_stores_clock_and_stops_after_three(
    store: JobStore, tmp_path: Path
) -> None:
    """10 s, then 30 s, from the store's time when the attempt failed: the engine's own clock (a
    ManualClock, months behind) plays no part. Before, the due time was the engine's clock plus
    the backoff, and only an engine whose clock read past it would claim the retry."""
    service = service_for(store, tmp_path, clock=ManualClock(), retry=RetryPolicy())
    scripted_connection(service, tmp_path, [{"records": 1, "stream": "users"}, {"exit": 1}])
    engine = service._engine()
    job = service.enqueue_replication("s")

    def attempt_ends_waiting(backoff_s: float) -> None:
        before = store.now()
        assert engine.tick(only=[job.id]) == 1
        while engine.running_attempt_ids():
            engine.tick(only=[job.id], claim=False)
            time.sleep(0.02)
        waiting = store.get_job(job.id)
        assert waiting.status is JobStatus.INCOMPLETE and waiting.next_attempt_at is not None
        backoff = timedelta(seconds=backoff_s)
        assert before + backoff <= waiting.next_attempt_at <= store.now() + backoff
        assert engine.tick(only=[job.id]) == 0  # the backoff is not over
        backoff_over(store, job.id)

    attempt_ends_waiting(10)
    attempt_ends_waiting(30)
    assert engine.tick(only=[job.id]) == 1
    while engine.running_attempt_ids():
        engine.tick(only=[job.id], claim=False)
        time.sleep(0.02)
    assert store.get_job(job.id).status is JobStatus.FAILED  # SYNC_JOB_MAX_ATTEMPTS = 3
    assert [a.number for a in store.list_attempts(job.id)] == [0, 1, 2]


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FERRYMAN_HOME": str(tmp_path / "home"),
        "FERRYMAN_ENGINE_HEARTBEAT_S": "0.2",
        "FERRYMAN_RETRY_BACKOFF_MIN_S": "0",
    }


def _postgres_url() -> Iterator[str]:
    try:
        import psycopg

        admin = psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=3
        )
    except Exception as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({exc})")
    name = f"ferryman_engine_{uuid.uuid4().hex[:8]}"
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_url()


def test_a_worker_whose_database_goes_away_backs_off_and_then_runs_the_next_job(
    postgres_url: str, local_env: dict[str, str]
) -> None:
    import psycopg

    store = open_store(postgres_url)  # migrated before the worker starts
    database = postgres_url.rsplit("/", 1)[1]
    env = {**local_env, "FERRYMAN_DATABASE_URL": postgres_url}
    worker = subprocess.Popen(
        [sys.executable, "-m", "ferryman", "worker"], env=env, stderr=subprocess.PIPE, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    said: list[str] = []

    def read() -> None:
        assert worker.stderr is not None
        for line in worker.stderr:
            said.append(line)
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()

    def wait_for_line(words: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if words in lines.get(timeout=1):
                    return
            except queue.Empty:
                assert worker.poll() is None, f"the worker died: {''.join(said)}"
        raise AssertionError(f"the worker never said {words!r}: {''.join(said)}")

    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    try:
        wait_for_line("started")
        # The database goes away under the worker: its connections are killed, new ones refused.
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
        )
        wait_for_line("trying again in 1s")
        wait_for_line("trying again in 2s")  # it backs off, and lives on
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")

        store = open_store(postgres_url)  # the test's own connections were cut too
        job = store.enqueue(JobType.SPEC, None, {"connector": "builtin:source-bench"})
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not store.get_job(job.id).status.terminal:
            assert worker.poll() is None, f"the worker died: {''.join(said)}"
            time.sleep(0.1)
        assert store.get_job(job.id).status is JobStatus.SUCCEEDED
    finally:
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        admin.close()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    assert "Traceback" not in "".join(said)
    assert "cannot be used" in "".join(said)  # the one line names the store and the reason


def _until(check: Any, what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def test_a_worker_whose_database_goes_away_mid_sync_saves_its_confirmed_state_once_it_is_back(
    postgres_url: str, local_env: dict[str, str], tmp_path: Path
) -> None:
    """The database goes away while a sync runs, with a state the destination confirmed and the
    worker held back (the flush interval), and the sync ends while it is away: its last save fails,
    so the attempt fails; once the database is back, the worker saves that state and the attempt's
    failure (the store's, as it was), and the retry starts from that state. Before, the attempt's
    end was dropped: the job stayed running until another engine saw its heartbeat go stale (60 s),
    failed it as one whose engine "stopped heartbeating", and the retry read again what the
    destination had confirmed."""
    import psycopg

    from tests.integration.engine_kinds import Workers, wait_until_terminal

    store = open_store(postgres_url)
    database = postgres_url.rsplit("/", 1)[1]
    home = Path(local_env["FERRYMAN_HOME"])
    started, go, finish, state_copy = (tmp_path / name for name in ("started", "go", "finish", "state.json"))
    users = {"state": {"name": "users"}}
    steps = [
        {"records": 5},
        users,  # the first confirmed state is saved at once
        {"touch": str(started)},
        {"wait_for_file": str(go), "timeout": 300},
        {"records": 5},
        users,  # held back by the interval
        {"wait_for_file": str(finish), "timeout": 300},
    ]
    scripted_connection(service_for(store, home), tmp_path, steps)  # discovers in this process
    service = JobService(store, settings(home))  # queues for the worker
    source = store.get_actor("source", "s-src")
    store.update_actor_config(source.id, {"steps": steps, "state_copy": str(state_copy)})
    connection = store.get_connection("s")
    hour = "3600"  # no save by the interval or a heartbeat, no engine failing a stale attempt
    held = {
        "FERRYMAN_STATE_FLUSH_S": hour,
        "FERRYMAN_ENGINE_HEARTBEAT_S": hour,
        "FERRYMAN_ENGINE_STALE_AFTER_S": hour,
    }
    workers = Workers(postgres_url, {**local_env, **held})
    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    try:
        workers.start()
        job = service.enqueue_replication("s")
        _until(started.exists, "the source to start")
        attempt = store.list_attempts(job.id)[0]
        go.touch()

        def committed() -> int:
            return sum(stat.records_committed or 0 for stat in store.list_stream_stats(attempt.id))

        _until(lambda: committed() == 10, "the destination to confirm the second state")  # saved stats
        assert store.get_state(connection.id)[0]["stream"]["stream_state"]["cursor"] == 5  # held back
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
        )
        finish.touch()  # the source ends while the database is away (and the retry's runs through)
        attempt_log = Path(attempt.log_path)
        _until(
            lambda: "the end of the attempt could not be saved" in attempt_log.read_text(),
            "the worker to wait for the database to save the attempt's end",
        )
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        store = open_store(postgres_url)  # the test's own connections were cut too
        _until(lambda: store.list_attempts(job.id)[0].status is AttemptStatus.FAILED, "attempt 0 to end")
        assert store.get_state(connection.id)[0]["stream"]["stream_state"]["cursor"] == 10
        first = store.list_attempts(job.id)[0]
        assert first.failure_summary is not None
        assert "cannot be used" in first.failure_summary["failures"][0]["message"], first.failure_summary
        (ended,) = wait_until_terminal(store, [job.id], workers)
    finally:
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        admin.close()
        workers.close()
    assert ended.status is JobStatus.SUCCEEDED, workers.stderr()
    given = json.loads(state_copy.read_text())  # what the retry started from
    assert [m["stream"]["stream_state"]["cursor"] for m in given] == [10]


def wait_for_state(store: JobStore, connection_id: int, timeout_s: float, failure: str) -> None:
    """Poll until the connection has a committed state; fail with ``failure`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while not store.get_state(connection_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.get_state(connection_id), failure


def start_engine(url: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """A local engine in a process of its own (engine_process.py), once it is up."""
    process = subprocess.Popen(
        [sys.executable, str(HERE / "engine_process.py"), url], env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    process.stdout.readline()  # its engine id: it is up
    return process


def test_an_engine_told_to_stop_ends_once_its_last_attempt_is_reaped_not_a_poll_later(
    store: JobStore, tmp_path: Path
) -> None:
    """A stopping engine waits for its running attempts. Once a pass reaped the last one, the
    loop waited a whole poll interval (here an hour) before it looked again: a server stopped
    with a sync running stayed up that long after the sync ended (CI once spent 60 s in the test
    above on it). The attempt's end had set the wake-up, and a clear after the wait lost it."""
    config = settings(tmp_path)
    engine = LocalEngine(store, config, limits=LIMITS, poll_interval_s=3600)
    service = JobService(store, config, engine)
    job = service.enqueue_spec("builtin:source-bench", "definition:bench")
    engine.tick(claim=True)  # claims and starts it, in a thread of the engine's
    (running,) = list(engine._running.values())
    running.thread.join(60)
    assert store.get_job(job.id).status is JobStatus.SUCCEEDED
    engine._wake.clear()  # its end's wake-up was taken by a wait that ended meanwhile
    stop = threading.Event()
    stop.set()
    loop = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    loop.start()
    loop.join(60)
    stopped = not loop.is_alive()
    engine._wake.set()  # lets an old loop go, whatever the assertion says
    assert stopped, "the engine waited for a poll after reaping its last attempt"


def test_a_job_submitted_in_the_engines_process_starts_without_waiting_for_a_poll(
    store: JobStore, tmp_path: Path
) -> None:
    # The server's API and its engine share a process: a job it queues is claimed at once, not
    # after the engine's poll interval (here an hour, so only the submit can start it).
    config = settings(tmp_path)
    engine = LocalEngine(store, config, limits=LIMITS, poll_interval_s=3600)
    service = JobService(store, config, engine)
    stop = threading.Event()
    loop = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    loop.start()
    try:
        job = service.enqueue_spec("builtin:source-bench", "definition:bench")
        deadline = time.monotonic() + 60
        while not store.get_job(job.id).status.terminal and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.get_job(job.id).status is JobStatus.SUCCEEDED
    finally:
        stop.set()
        engine._wake.set()  # the loop waits an hour between passes otherwise
        loop.join(60)


def test_an_attempt_whose_thread_is_still_starting_is_not_reaped_as_ended(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Temporal activity starts an attempt on its own thread (``LocalEngine.start``) while the
    worker's store thread reaps ended ones. A reap in the moment between the attempt's
    registration and its thread's start used to take it for ended: it then ran unknown to the
    engine, never heartbeaten, and a cancel never reached it (a Temporal cancel test failed so
    under load). The reap is run in that moment here by a patched ``Thread.start``, since a real
    run cannot be made to be scheduled so on demand."""
    service = service_for(store, tmp_path)
    engine = service.engine
    assert isinstance(engine, LocalEngine)
    bench_connection(service, "t", tmp_path, 10**9)
    job = JobService(store, settings(tmp_path)).enqueue_replication("t")  # queued, not claimed
    ((job, attempt),) = store.claim(engine.engine_id, LIMITS, engine.clock.now(), engine.log_path, [job.id])
    real_start = threading.Thread.start

    def start_after_a_reap(thread: threading.Thread) -> None:
        if thread.name.startswith(f"job-{job.id}-"):
            engine.tick(claim=False)  # the store thread's pass, in the moment before the start
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_after_a_reap)
    thread = engine.start(job, attempt)
    monkeypatch.undo()

    assert engine.running_attempt_ids() == [attempt.id]
    store.request_cancel(job.id)
    deadline = time.monotonic() + 60
    while thread.is_alive() and time.monotonic() < deadline:
        engine.tick(claim=False)  # passes the store's cancel on, as the worker's store thread does
        thread.join(0.1)
    assert not thread.is_alive(), "the cancel never reached the attempt"
    assert store.get_job(job.id).status is JobStatus.CANCELLED
