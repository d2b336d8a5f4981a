"""The Temporal engine on a real `temporal server start-dev`: workflows, retries, cancel, no job twice."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from temporalio.client import Client

from ferryman.engines.local import LocalEngine
from ferryman.engines.temporal.engine import TemporalEngine, start_job
from ferryman.engines.temporal.settings import RESUBMIT_AFTER_S, TemporalSettings
from ferryman.engines.temporal.shapes import RUN_ATTEMPT
from ferryman.engines.temporal.worker import ASK_AGAIN_AFTER_S, TemporalWorker
from ferryman.jobs.failures import FailureType
from ferryman.jobs.retry import RetryPolicy
from ferryman.jobs.states import AttemptStatus, JobStatus, JobType
from ferryman.service import JobService
from ferryman.store import open_store
from ferryman.store.base import JobStore
from ferryman.store.rows import utcnow
from tests.integration.test_engine import (
    LIMITS,
    bench_connection,
    rows,
    scripted_connection,
    settings,
    wait_for_state,
)
from tests.temporal_support import TemporalServer, run_or_explain, temporal_binary


@pytest.fixture(scope="module")
def temporal_address(temporal_server: TemporalServer) -> str:
    """The session's Temporal dev server (tests/temporal_support.py); each test takes its own
    task-queue prefix on it (see ``temporal``)."""
    return temporal_server.address


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return open_store(f"sqlite:///{tmp_path / 'ferryman.db'}")


@pytest.fixture
def temporal(temporal_address: str) -> TemporalSettings:
    """Task queues of this test's own: workers of other tests never see its jobs."""
    return TemporalSettings(address=temporal_address, task_queue_prefix=f"t{uuid.uuid4().hex[:8]}-")


class Worker:
    """A Temporal worker engine on a thread of the test process."""

    def __init__(
        self, store: JobStore, home: Path, temporal: TemporalSettings, retry: RetryPolicy, ask_again_s: float
    ) -> None:
        config = settings(home)
        local = LocalEngine(store, config, retry=retry, limits=LIMITS, heartbeat_interval_s=0.2)
        local.poll_interval_s = 0.05
        self.engine = TemporalWorker(store, config, temporal, local=local, ask_again_s=ask_again_s)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.engine.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.engine.cancel_all()
        self.stop.set()
        self.thread.join(60)


@pytest.fixture
def worker_for(store: JobStore, tmp_path: Path, temporal: TemporalSettings) -> Iterator[Any]:
    started: list[Worker] = []

    def start(
        retry: RetryPolicy | None = None,
        temporal: TemporalSettings = temporal,
        ask_again_s: float = ASK_AGAIN_AFTER_S,
    ) -> Worker:
        started.append(
            Worker(store, tmp_path, temporal, retry or RetryPolicy(backoff_min_s=0.01), ask_again_s)
        )
        return started[-1]

    yield start
    for worker in started:
        worker.close()


def client_service(store: JobStore, home: Path, temporal: TemporalSettings) -> JobService:
    """The job service of a CLI command or the server: submits to Temporal, reads the store."""
    return JobService(store, settings(home), TemporalEngine(store, settings(home), temporal))


def test_a_sync_runs_as_a_workflow_and_the_store_shows_its_job_attempt_and_stats(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, worker_for: Any
) -> None:
    worker_for()
    service = client_service(store, tmp_path, temporal)
    bench_connection(service, "t", tmp_path, 5_000)  # its discover ran as a workflow too

    job = service.run(service.enqueue_replication("t"), timeout_s=120)

    assert job.status is JobStatus.SUCCEEDED
    (attempt,) = store.list_attempts(job.id)
    assert attempt.status is AttemptStatus.SUCCEEDED
    stats = store.list_stream_stats(attempt.id)
    assert sum(s.records_committed or 0 for s in stats) == 5_000
    assert rows(tmp_path / "t.duckdb") == (5_000, 5_000)


def test_the_attempt_times_out_after_the_heartbeat_timeout_given_where_the_job_was_submitted(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, worker_for: Any
) -> None:
    """FERRYMAN_TEMPORAL_HEARTBEAT_TIMEOUT_S travels with the job's input: the attempt activity
    in the workflow's history carries it (30 s when unset, the heartbeat timeout of before)."""
    worker_for()
    given = dataclasses.replace(temporal, heartbeat_timeout_s=7.0)
    service = client_service(store, tmp_path, given)
    bench_connection(service, "t", tmp_path, 10)

    job = service.run(service.enqueue_replication("t"), timeout_s=120)

    assert job.status is JobStatus.SUCCEEDED
    assert asyncio.run(attempt_heartbeat_timeouts(given, job.id)) == [7.0]


async def attempt_heartbeat_timeouts(temporal: TemporalSettings, job_id: int) -> list[float]:
    client = await Client.connect(temporal.address, namespace=temporal.namespace)
    history = await client.get_workflow_handle(temporal.workflow_id(job_id)).fetch_history()
    return [
        event.activity_task_scheduled_event_attributes.heartbeat_timeout.ToTimedelta().total_seconds()
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
        and event.activity_task_scheduled_event_attributes.activity_type.name == RUN_ATTEMPT
    ]


def test_a_job_waiting_to_retry_whose_workflow_was_lost_gets_its_next_attempt(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, worker_for: Any
) -> None:
    """A Temporal server that lost its data (a dev server without --db-filename, a namespace
    reset) lost the workflow sleeping out the job's backoff: the store's job would wait for ever,
    its connection busy. Here the job never had a workflow, as after such a loss."""
    worker_for()
    service = client_service(store, tmp_path, temporal)
    bench_connection(service, "lost", tmp_path, 10)
    job = store.enqueue(JobType.SYNC, str(store.get_connection("lost").id), service._replication_config(
        store.get_connection("lost")))  # fmt: skip
    now = utcnow()
    [(_, attempt)] = store.claim("a-lost-engine", {"sync": 1}, now, lambda j, n: str(tmp_path / "x.log"))
    store.end_attempt(attempt, AttemptStatus.FAILED, JobStatus.INCOMPLETE, now)
    overdue_s = RESUBMIT_AFTER_S + 5  # due that long ago by the store's clock
    assert store.schedule_retry(job.id, -overdue_s).status is JobStatus.INCOMPLETE

    deadline = time.monotonic() + 120  # the worker looks for such jobs every RESUBMIT_EVERY_S
    while not store.get_job(job.id).status.terminal and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.get_job(job.id).status is JobStatus.SUCCEEDED
    assert [a.status for a in store.list_attempts(job.id)] == [AttemptStatus.FAILED, AttemptStatus.SUCCEEDED]


def test_a_config_error_is_not_retried(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, worker_for: Any
) -> None:
    worker_for()
    service = client_service(store, tmp_path, temporal)
    bench_connection(service, "bad", tmp_path, 10)
    source = store.get_actor("source", "bad-src")
    store.update_actor_config(source.id, {"count": "many"})  # source-bench refuses it: config_error

    job = service.run(service.enqueue_replication("bad"), timeout_s=120)

    assert job.status is JobStatus.FAILED
    (attempt,) = store.list_attempts(job.id)
    assert attempt.failure_summary is not None
    assert attempt.failure_summary["failures"][0]["type"] == FailureType.CONFIG_ERROR


def test_a_failing_source_is_retried_after_the_backoff_until_the_attempts_run_out(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, worker_for: Any
) -> None:
    worker_for(RetryPolicy(backoff_min_s=0.5, backoff_base=2))
    service = client_service(store, tmp_path, temporal)
    scripted_connection(service, tmp_path, [{"records": 1, "stream": "users"}, {"exit": 1}])

    job = service.run(service.enqueue_replication("s"), timeout_s=120)

    assert job.status is JobStatus.FAILED
    attempts = store.list_attempts(job.id)
    assert [a.number for a in attempts] == [0, 1, 2]  # SYNC_JOB_MAX_ATTEMPTS = 3
    gaps = [(b.created_at - a.ended_at).total_seconds() for a, b in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.5  # 0.5 s x 2^0 after the first failure
    assert gaps[1] >= 1.0  # 0.5 s x 2^1 after the second


def test_cancel_of_a_running_sync_stops_its_connectors_and_keeps_the_committed_state(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, worker_for: Any
) -> None:
    worker_for()
    service = client_service(store, tmp_path, temporal)
    steps = [
        {"records": 3, "stream": "users"},
        {"state": {"name": "users"}},
        {"forever": {"stream": "users"}},
    ]
    scripted_connection(service, tmp_path, steps)
    job = service.enqueue_replication("s")
    connection_id = store.get_connection("s").id
    wait_for_state(store, connection_id, 60, "no state was committed")

    service.cancel(job.id)  # the store's request, and the workflow's cancel

    ended = run_or_explain(service, job, 60)
    assert ended.status is JobStatus.CANCELLED
    (attempt,) = store.list_attempts(job.id)
    assert attempt.failure_summary is not None
    assert attempt.failure_summary["failures"][0]["type"] == FailureType.MANUAL_CANCELLATION
    assert store.get_state(connection_id)[0]["stream"]["stream_state"] is not None
    assert [p for p in attempt.pids if psutil.pid_exists(p)] == []  # connectors gone


def test_a_cancel_reaches_a_running_sync_while_the_worker_waits_on_temporal(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, worker_for: Any
) -> None:
    """A user's cancel reaches the attempt through the store (the worker's loop reads
    ``cancel_requested``), whatever Temporal does. That loop took turns on the asyncio loop with
    the sweep's calls to Temporal: a call Temporal did not answer (a describe had no timeout) or
    a starved host slowing that loop held the cancel back until the attempt's next heartbeat
    answer, 10 s later, or for ever. Here the sweep hangs (a stand-in: a real Temporal server
    answers at once, and one made not to answer would stop the workers too) and the activity
    heartbeats once an hour, so only the store's path can stop the sync."""
    quiet = dataclasses.replace(temporal, heartbeat_s=3600.0, heartbeat_timeout_s=7200.0)
    worker = worker_for(temporal=quiet)
    hanging, released = threading.Event(), threading.Event()

    async def unanswered(client: Any) -> None:
        hanging.set()
        await asyncio.to_thread(released.wait)

    try:
        service = client_service(store, tmp_path, quiet)
        steps = [
            {"records": 3, "stream": "users"},
            {"state": {"name": "users"}},
            {"forever": {"stream": "users"}},
        ]
        scripted_connection(service, tmp_path, steps)
        job = service.enqueue_replication("s")
        wait_for_state(store, store.get_connection("s").id, 60, "no state was committed")
        worker.engine.sweep = unanswered  # its next sweep waits on "Temporal"
        assert hanging.wait(60), "the worker never swept again"

        service.cancel(job.id)

        ended = run_or_explain(service, job, 60)
        assert ended.status is JobStatus.CANCELLED
        (attempt,) = store.list_attempts(job.id)
        assert attempt.failure_summary is not None
        assert attempt.failure_summary["failures"][0]["type"] == FailureType.MANUAL_CANCELLATION
        assert [p for p in attempt.pids if psutil.pid_exists(p)] == []  # connectors gone
    finally:
        released.set()


def test_a_job_started_twice_runs_once(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, worker_for: Any
) -> None:
    worker_for()
    service = client_service(store, tmp_path, temporal)
    bench_connection(service, "once", tmp_path, 100)
    job = service.enqueue_replication("once")  # started once here

    async def start_again() -> bool:
        from temporalio.client import Client

        return await start_job(await Client.connect(temporal.address), temporal, job)

    assert asyncio.run(start_again()) is False
    ended = service.run(job, timeout_s=120)  # submits again too
    assert asyncio.run(start_again()) is False  # a finished job's workflow id is never reused
    assert ended.status is JobStatus.SUCCEEDED
    assert len(store.list_attempts(job.id)) == 1
    assert rows(tmp_path / "once.duckdb") == (100, 100)


def pending_heartbeats(temporal: TemporalSettings, job_id: int) -> list[dict[str, Any]]:
    """What the running activities of the job's workflow last heartbeated, as Temporal holds it."""

    async def describe() -> list[dict[str, Any]]:
        from temporalio.client import Client

        client = await Client.connect(temporal.address, namespace=temporal.namespace)
        description = await client.get_workflow_handle(temporal.workflow_id(job_id)).describe()
        converter = client.data_converter.payload_converter
        return [
            converter.from_payloads(list(pending.heartbeat_details.payloads))[0]
            for pending in description.raw_description.pending_activities
            if pending.heartbeat_details.payloads
        ]

    return asyncio.run(describe())


def test_a_state_over_temporals_payload_limit_does_not_fail_the_sync(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, worker_for: Any
) -> None:
    """A connection whose state is over 2 MB (many streams or partitions): the activity's heartbeat
    carried the whole state, which Temporal refuses over its 2 MB payload limit, so every heartbeat
    was dropped, the attempt failed as "the worker running this attempt was lost", and so did each
    retry: the job failed. Now a large state is left out of the heartbeat (its size goes instead)."""
    worker_for(temporal=dataclasses.replace(temporal, heartbeat_s=0.2))
    service = client_service(store, tmp_path, temporal)
    go = tmp_path / "go"
    steps = [
        {"records": 3, "stream": "users"},
        {"state": {"name": "users", "pad": 3_000_000}},
        {"wait_for_file": str(go), "timeout": 120},
        {"records": 3, "stream": "users"},
        {"state": {"name": "users", "pad": 3_000_000}},
    ]
    scripted_connection(service, tmp_path, steps)
    job = service.enqueue_replication("s")
    connection_id = store.get_connection("s").id
    wait_for_state(store, connection_id, 60, "no state was committed")

    deadline = (
        time.monotonic() + 60
    )  # until Temporal holds a heartbeat sent after the state, or the attempt failed
    while not any("state_bytes" in beat for beat in pending_heartbeats(temporal, job.id)):
        if store.list_attempts(job.id)[0].status is not AttemptStatus.RUNNING:
            break
        assert time.monotonic() < deadline, "no heartbeat reached Temporal"
        time.sleep(0.1)
    go.touch()

    ended = service.run(job, timeout_s=120)
    attempts = store.list_attempts(job.id)
    assert [a.status for a in attempts] == [AttemptStatus.SUCCEEDED], attempts[0].failure_summary
    assert ended.status is JobStatus.SUCCEEDED
    assert store.get_state(connection_id)[0]["stream"]["stream_state"]["cursor"] == 6


def waiting_sync(service: JobService, tmp_path: Path) -> tuple[int, Path]:
    """A sync whose source commits a state, then waits for a file that comes only once the test
    creates it; returns the connection's id and that file."""
    go = tmp_path / "go"
    steps = [
        {"records": 3, "stream": "users"},
        {"state": {"name": "users"}},
        {"wait_for_file": str(go), "timeout": 600},
        {"records": 2, "stream": "users"},
        {"state": {"name": "users"}},
    ]
    scripted_connection(service, tmp_path, steps)
    return service.store.get_connection("s").id, go


def end_workflow_outside(temporal: TemporalSettings, job_id: int, how: str) -> None:
    """What an operator does: ``temporal workflow terminate`` (or ``cancel``) with the CLI."""
    binary = temporal_binary()
    assert binary is not None
    command = [binary, "workflow", how, "--address", temporal.address, "--namespace", temporal.namespace]
    command += ["--workflow-id", temporal.workflow_id(job_id)]
    if how == "terminate":
        command += ["--reason", "an operator's clean-up"]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("how", "job_status", "failure_type", "said"),
    [
        ("terminate", JobStatus.FAILED, FailureType.SYSTEM_ERROR, "was terminated outside Ferryman"),
        ("cancel", JobStatus.CANCELLED, FailureType.MANUAL_CANCELLATION, "was cancelled through Temporal"),
    ],
)
def test_a_sync_whose_workflow_is_ended_through_temporal_ends_and_stops_its_connectors(
    store: JobStore,
    tmp_path: Path,
    temporal: TemporalSettings,
    worker_for: Any,
    how: str,
    job_status: JobStatus,
    failure_type: FailureType,
    said: str,
) -> None:
    """An operator terminates a running sync's workflow (or cancels it) with the temporal CLI.
    A terminated workflow runs no more code, and its activity ran on, so the job stayed running
    for ever, its connectors alive and its connection busy. Now the activity, told at its next
    heartbeat that its workflow is gone, finds it ended and stops the attempt: the job fails (or
    is cancelled) with a reason that says what happened, and the committed state is kept."""
    # A heartbeat timeout of a few seconds: Temporal hears the activity's heartbeats (and answers
    # that its workflow is gone) at most every 0.8 of it.
    submitted = dataclasses.replace(temporal, heartbeat_s=0.2, heartbeat_timeout_s=5.0)
    worker_for(temporal=submitted)
    service = client_service(store, tmp_path, submitted)
    connection_id, go = waiting_sync(service, tmp_path)
    job = service.enqueue_replication("s")
    wait_for_state(store, connection_id, 60, "no state was committed")

    end_workflow_outside(temporal, job.id, how)

    ended = service.run(job, timeout_s=120)
    assert ended.status is job_status
    (attempt,) = store.list_attempts(job.id)
    assert attempt.status is AttemptStatus.FAILED
    assert attempt.failure_summary is not None
    failure = attempt.failure_summary["failures"][0]
    assert failure["type"] == failure_type
    assert said in failure["message"] and temporal.workflow_id(job.id) in failure["message"]
    assert failure["retryable"] is False
    assert [p for p in attempt.pids if psutil.pid_exists(p)] == []  # connectors gone
    assert store.get_state(connection_id)[0]["stream"]["stream_state"]["cursor"] == 3  # kept

    go.touch()  # the connection is free: the next sync goes on from the committed state
    again = service.run(service.enqueue_replication("s"), timeout_s=120)
    assert again.status is JobStatus.SUCCEEDED
    assert store.get_state(connection_id)[0]["stream"]["stream_state"]["cursor"] == 5


def test_a_job_waiting_to_retry_whose_workflow_is_terminated_fails_with_the_reason(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, worker_for: Any
) -> None:
    """Terminated while it waits out its backoff, the workflow never starts the next attempt, and
    no attempt runs to notice: the workers' sweep does. The job fails within the sweep's
    ask-again interval (1 s here, 60 s by default), not after its backoff, with an attempt that
    ran no connector and says why."""
    quick = dataclasses.replace(temporal, resubmit_after_s=1)
    worker_for(RetryPolicy(backoff_min_s=3600), temporal=quick, ask_again_s=1.0)
    service = client_service(store, tmp_path, temporal)
    scripted_connection(service, tmp_path, [{"records": 1, "stream": "users"}, {"exit": 1}])
    job = service.enqueue_replication("s")
    deadline = time.monotonic() + 120
    while store.get_job(job.id).next_attempt_at is None:  # the first attempt failed: waiting an hour
        assert time.monotonic() < deadline, "the first attempt did not fail"
        time.sleep(0.1)

    end_workflow_outside(temporal, job.id, "terminate")

    ended = service.run(job, timeout_s=120)
    assert ended.status is JobStatus.FAILED
    first, last = store.list_attempts(job.id)
    assert first.failure_summary is not None and last.failure_summary is not None
    assert first.failure_summary["failures"][0]["type"] == FailureType.SYSTEM_ERROR  # the source's exit
    failure = last.failure_summary["failures"][0]
    assert "was terminated outside Ferryman" in failure["message"]
    assert last.status is AttemptStatus.FAILED and last.pids == []  # no connector ran
    assert "no connector runs in this attempt" in Path(last.log_path).read_text()
