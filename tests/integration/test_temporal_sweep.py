"""The Temporal workers' sweep (``TemporalWorker.sweep``) on a real dev server: how often it asks
Temporal about the jobs no attempt runs, and by whose clock it judges a pending job's age.

Each sweep here is one call, made by the test (the worker's loop makes the same call every 5 s
at most), through a client built with a Temporal client interceptor that counts the describe
calls it passes on to the real server. It only observes: every answer is the server's."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    Client,
    DescribeWorkflowInput,
    Interceptor,
    OutboundInterceptor,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError, RPCStatusCode

from ferryman.clock import OffsetClock
from ferryman.engines.local import LocalEngine
from ferryman.engines.temporal.engine import workflow_status
from ferryman.engines.temporal.settings import TemporalSettings
from ferryman.engines.temporal.worker import TemporalWorker
from ferryman.jobs.failures import FailureType
from ferryman.jobs.retry import RetryPolicy
from ferryman.jobs.states import AttemptStatus, JobStatus
from ferryman.service import JobService
from ferryman.store import open_store
from ferryman.store.base import Job, JobStore
from tests.integration.test_engine import postgres_url, scripted, settings
from tests.integration.test_scheduler_clock_skew import on_host
from tests.integration.test_temporal_engine import (
    client_service,
    end_workflow_outside,
    store,
    temporal,
    temporal_address,
    worker_for,
)

__all__ = ["postgres_url", "store", "temporal", "temporal_address", "worker_for"]  # fixtures used here

WAITING_JOBS = 3
SWEEPS = 5
FIVE_MINUTES_S = 300.0


class CountDescribes(Interceptor):
    """Notes the workflow id of every describe the client sends, then sends it on."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Counting(next, self.asked)


class _Counting(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, asked: list[str]) -> None:
        super().__init__(next)
        self.asked = asked

    async def describe_workflow(self, input: DescribeWorkflowInput) -> WorkflowExecutionDescription:
        self.asked.append(input.id)
        return await super().describe_workflow(input)


async def counting_client(temporal: TemporalSettings) -> tuple[Client, list[str]]:
    counter = CountDescribes()
    client = await Client.connect(temporal.address, namespace=temporal.namespace, interceptors=[counter])
    return client, counter.asked


def until(done: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def jobs_waiting_out_a_long_backoff(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, worker_for: Any
) -> list[Job]:
    """WAITING_JOBS syncs (one per connection) whose first attempt failed on a real worker, which
    then stopped: each workflow sleeps out an hour's backoff, and only the test's sweeps look."""
    runner = worker_for(RetryPolicy(backoff_min_s=3600))
    service = client_service(store, tmp_path, temporal)
    names = [f"s{n}" for n in range(WAITING_JOBS)]
    source = service.create_actor("source", "src", scripted(tmp_path), {})
    service.create_actor("destination", "dst", "builtin:destination-jsonl", {"path": str(tmp_path / "out")})
    for name in names:
        service.create_connection(name, "src", "dst")
    store.update_actor_config(source.id, {"steps": [{"records": 1, "stream": "users"}, {"exit": 1}]})
    jobs = [service.enqueue_replication(name) for name in names]
    until(lambda: all(store.get_job(job.id).next_attempt_at for job in jobs), "no first attempt failed")
    runner.close()
    return jobs


def test_a_worker_asks_temporal_about_each_job_waiting_out_its_backoff_once_a_minute_not_every_sweep(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, worker_for: Any
) -> None:
    """Three jobs wait out an hour's backoff; another worker sweeps five times in a row (what it
    does in 25 s). It asks Temporal about each job once: 3 describes, where it sent 15 before
    (one per job per sweep, on every worker, whatever the number of jobs waiting)."""
    jobs = jobs_waiting_out_a_long_backoff(store, tmp_path, temporal, worker_for)
    sweeper = TemporalWorker(store, settings(tmp_path), temporal)  # asks again after 60 s

    async def sweeps() -> list[str]:
        client, asked = await counting_client(temporal)
        for _ in range(SWEEPS):  # milliseconds each, far within the minute
            await sweeper.sweep(client)
        return asked

    asked = asyncio.run(sweeps())

    assert sorted(asked) == sorted(temporal.workflow_id(job.id) for job in jobs)
    assert [store.get_job(job.id).status for job in jobs] == [JobStatus.INCOMPLETE] * WAITING_JOBS


def test_a_waiting_job_whose_workflow_is_terminated_after_the_sweep_asked_is_ended_when_it_asks_again(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, worker_for: Any
) -> None:
    """The bound the throttle keeps: a sweep found the workflow running; an operator then
    terminates it. The job is ended by the first sweep ``ask_again_s`` later (1 s here; 60 s by
    default), and the jobs still waiting are left alone."""
    jobs = jobs_waiting_out_a_long_backoff(store, tmp_path, temporal, worker_for)
    sweeper = TemporalWorker(store, settings(tmp_path), temporal, ask_again_s=1.0)
    gone = jobs[0]

    async def sweep_until_ended() -> list[str]:
        client, asked = await counting_client(temporal)
        await sweeper.sweep(client)  # each workflow is running: the job is left waiting
        end_workflow_outside(temporal, gone.id, "terminate")
        deadline = time.monotonic() + 60
        while not store.get_job(gone.id).status.terminal:
            assert time.monotonic() < deadline, "the sweep never asked again"
            await sweeper.sweep(client)
            await asyncio.sleep(0.1)
        return asked

    asked = asyncio.run(sweep_until_ended())

    assert asked[:WAITING_JOBS] == [temporal.workflow_id(job.id) for job in jobs]  # oldest first
    assert asked.count(temporal.workflow_id(gone.id)) == 2  # running, then terminated
    assert store.get_job(gone.id).status is JobStatus.FAILED
    _, last = store.list_attempts(gone.id)
    assert last.status is AttemptStatus.FAILED and last.failure_summary is not None
    failure = last.failure_summary["failures"][0]
    assert (
        failure["type"] == FailureType.SYSTEM_ERROR
        and "was terminated outside Ferryman" in failure["message"]
    )
    assert [store.get_job(job.id).status for job in jobs[1:]] == [JobStatus.INCOMPLETE] * (WAITING_JOBS - 1)


@pytest.mark.parametrize("offset_s", [-FIVE_MINUTES_S, FIVE_MINUTES_S], ids=["5-min-behind", "5-min-ahead"])
def test_a_worker_with_a_wrong_clock_judges_a_pending_jobs_age_by_the_stores_clock(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings, offset_s: float
) -> None:
    """A job queued through the store alone, as when its submit could not reach Temporal. A
    worker whose host clock is 5 minutes off must leave it alone while it is younger than
    FERRYMAN_TEMPORAL_RESUBMIT_AFTER_S (its submit may still start the workflow) and start its
    workflow once it is older, both by the store's clock. Before, a clock 5 minutes ahead started
    (and asked about) every job at once, and one 5 minutes behind left a job without a workflow
    for 5 minutes more."""
    config = settings(tmp_path)
    job = JobService(store, config).enqueue_spec("builtin:destination-jsonl", "sweep-test")

    def sweeper(resubmit_after_s: float) -> TemporalWorker:
        local = LocalEngine(store, config, clock=OffsetClock(offset_s))
        return TemporalWorker(
            store, config, dataclasses.replace(temporal, resubmit_after_s=resubmit_after_s), local=local
        )

    async def sweeps() -> tuple[list[str], WorkflowExecutionStatus | None, list[str]]:
        client, asked = await counting_client(temporal)
        looking = await Client.connect(temporal.address, namespace=temporal.namespace)  # the test's own
        workflow_id = temporal.workflow_id(job.id)
        await sweeper(60.0).sweep(client)  # the job is seconds old
        young_asked, young_workflow = list(asked), await workflow_status(looking, workflow_id)
        asked.clear()
        later = sweeper(1.0)
        deadline = time.monotonic() + 60
        while await workflow_status(looking, workflow_id) is None:
            assert time.monotonic() < deadline, "the sweep never started the old job's workflow"
            await later.sweep(client)
            await asyncio.sleep(0.1)
        return young_asked, young_workflow, asked

    young_asked, young_workflow, old_asked = asyncio.run(sweeps())

    assert young_asked == [] and young_workflow is None  # left alone: not asked about, not started
    assert old_asked == [temporal.workflow_id(job.id)]  # asked about once, found without one, started
    assert store.get_job(job.id).status is JobStatus.PENDING  # no worker polls this test's queues


@pytest.mark.parametrize("offset_s", [-FIVE_MINUTES_S, FIVE_MINUTES_S], ids=["5-min-behind", "5-min-ahead"])
@pytest.mark.parametrize("store_kind", ["postgres", "sqlite"])
def test_a_job_queued_on_a_host_with_a_wrong_clock_is_judged_by_the_stores_clock(
    store_kind: str,
    offset_s: float,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    temporal: TemporalSettings,
) -> None:
    """A job queued through the store alone (its submit never reached Temporal) by a host whose
    clock is 5 minutes off; a worker whose clock is right sweeps. It must leave the job alone
    while the job is younger than FERRYMAN_TEMPORAL_RESUBMIT_AFTER_S by the store's time, and
    start its workflow at the first sweep after. Before, the job was stamped by the queueing
    host: from one 5 minutes behind it looked 5 minutes old and its workflow was started at once
    (beside the submit that may be starting it); from one 5 minutes ahead it waited 5 minutes
    more without a workflow."""
    url = (
        request.getfixturevalue("postgres_url")
        if store_kind == "postgres"
        else f"sqlite:///{tmp_path / 'f.db'}"
    )
    store = open_store(url)
    config = settings(tmp_path)
    with on_host(offset_s):
        job = JobService(store, config).enqueue_spec("builtin:destination-jsonl", "sweep-test")
    queued_to = store.now()

    def sweeper(resubmit_after_s: float) -> TemporalWorker:
        local = LocalEngine(store, config)
        return TemporalWorker(
            store, config, dataclasses.replace(temporal, resubmit_after_s=resubmit_after_s), local=local
        )

    async def sweeps() -> tuple[list[str], WorkflowExecutionStatus | None, WorkflowExecutionStatus | None]:
        client, asked = await counting_client(temporal)
        looking = await Client.connect(temporal.address, namespace=temporal.namespace)  # the test's own
        workflow_id = temporal.workflow_id(job.id)
        await sweeper(60.0).sweep(client)  # the job is seconds old by the store's time
        young_asked, young_workflow = list(asked), await workflow_status(looking, workflow_id)
        # One second old by the store's time, whatever its stamp says: one sweep starts it.
        await asyncio.to_thread(until, lambda: store.now() >= queued_to + timedelta(seconds=1), "1 s passes")
        await sweeper(1.0).sweep(client)
        return young_asked, young_workflow, await workflow_status(looking, workflow_id)

    try:
        young_asked, young_workflow, old_workflow = asyncio.run(sweeps())
        assert young_asked == [] and young_workflow is None  # left alone: not asked, not started
        assert old_workflow is not None  # started at the first sweep once it was old enough
        assert store.get_job(job.id).status is JobStatus.PENDING  # no worker polls this test's queues
    finally:
        store.close()


class RefuseOneStart(Interceptor):
    """Refuses the first workflow start as an unreachable server would (an RPCError the real server
    cannot be made to send at that instant: between its answer to the describe and the start);
    passes every other call on."""

    def __init__(self) -> None:
        self.refused = 0

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _RefusingOneStart(next, self)


class _RefusingOneStart(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, owner: RefuseOneStart) -> None:
        super().__init__(next)
        self.owner = owner

    async def start_workflow(self, input: Any) -> Any:
        if not self.owner.refused:
            self.owner.refused += 1
            raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")
        return await super().start_workflow(input)


def test_a_start_refused_mid_sweep_is_tried_again_at_the_next_sweep_and_the_worker_lives(
    store: JobStore, tmp_path: Path, temporal: TemporalSettings
) -> None:
    """Temporal answered the describe (no workflow), then refused the start. Before, the error left
    the sweep and ended the worker's loop: the worker stopped running jobs. Now the sweep logs it
    and the next one starts the workflow, without waiting out the minute between asks."""
    config = settings(tmp_path)
    job = JobService(store, config).enqueue_spec("builtin:destination-jsonl", "sweep-test")
    sweeper = TemporalWorker(store, config, dataclasses.replace(temporal, resubmit_after_s=0.0))
    refuse = RefuseOneStart()

    async def sweeps() -> WorkflowExecutionStatus | None:
        client = await Client.connect(temporal.address, namespace=temporal.namespace, interceptors=[refuse])
        await sweeper.sweep(client)  # refused: must not raise
        await sweeper.sweep(client)
        return await workflow_status(client, temporal.workflow_id(job.id))

    status = asyncio.run(sweeps())

    assert refuse.refused == 1
    assert status is WorkflowExecutionStatus.RUNNING
