"""The Temporal engine when Temporal loses sight of things: ``ferryman worker --engine temporal``
processes on a real dev server, frozen, cut off or outlived by it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from ferryman.engines.temporal.engine import TemporalEngine
from ferryman.engines.temporal.settings import TemporalSettings
from ferryman.jobs.states import AttemptStatus, JobStatus
from ferryman.service import JobService
from ferryman.store import open_store
from ferryman.store.base import Attempt, Job, JobStore
from tests.integration.engine_kinds import Workers, engine_env, wait_until_terminal, workers_for
from tests.integration.test_engine import scripted_connection, service_for, settings
from tests.integration.test_engine_kinds import wait_for_state

__all__ = ["engine_env", "workers_for"]  # fixtures used here


@pytest.fixture
def engine_kind() -> str:  # what engine_env asks for: Temporal only here
    return "temporal"


def submit(store: JobStore, home: Path, workers: Workers, connection: str) -> Job:
    """What `connections sync --detach` does on Temporal: queue the job, start its workflow."""
    service = JobService(store, settings(home), TemporalEngine(store, settings(home), temporal_of(workers)))
    return service.enqueue_replication(connection)


def temporal_of(workers: Workers) -> TemporalSettings:
    return TemporalSettings.from_env(workers.env)


def left_running(attempts: list[Attempt]) -> list[int]:
    """The attempts' connector processes still alive (pids are checked, not job ids: other
    stores on this machine have jobs of the same ids)."""
    alive = []
    for pid in (pid for attempt in attempts for pid in attempt.pids):
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
    return alive


def history_has(workers: Workers, job_id: int, event: EventType.ValueType) -> bool:
    temporal = temporal_of(workers)

    async def look() -> bool:
        client = await Client.connect(temporal.address, namespace=temporal.namespace)
        history = await client.get_workflow_handle(temporal.workflow_id(job_id)).fetch_history()
        return any(e.event_type == event for e in history.events)

    return asyncio.run(look())


def test_a_worker_that_temporal_gave_up_for_lost_but_lives_finishes_its_attempt_alone(
    tmp_path: Path, workers_for: type[Workers]
) -> None:
    """A worker frozen (a VM paused, a long GC, its link to Temporal cut) for longer than the
    activity's 30 s heartbeat timeout, while another worker runs: Temporal times the activity out
    and the other worker settles the attempt. It failed it as "the worker running this attempt
    was lost", killed its connectors (on another host they ran on, beside the retry) and started
    a second attempt; the frozen worker, back, stopped its attempt as if cancelled. Now the
    settle waits while the attempt's worker heartbeats the store, and that worker finishes it."""
    url = f"sqlite:///{tmp_path / 'ferryman.db'}"
    home = tmp_path / "home"
    go = tmp_path / "go"
    steps = [
        {"records": 3, "stream": "users"},
        {"state": {"name": "users"}},
        {"wait_for_file": str(go), "timeout": 300},
        {"records": 3, "stream": "users"},
        {"state": {"name": "users"}},
    ]
    scripted_connection(service_for(open_store(url), home), tmp_path, steps)
    store = open_store(url)
    workers = workers_for(url)
    frozen = workers.start(FERRYMAN_ENGINE_STALE_AFTER_S="300", FERRYMAN_TEMPORAL_HEARTBEAT_S="0.5")
    job = submit(store, home, workers, "s")
    wait_for_state(store, store.get_connection("s").id, workers, "no state was committed")
    workers.start(FERRYMAN_ENGINE_STALE_AFTER_S="300")  # the one that settles, once Temporal gives up

    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 120  # the heartbeat timeout is 30 s
        while not history_has(workers, job.id, EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT):
            assert time.monotonic() < deadline, workers.stderr()
            time.sleep(0.5)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    go.touch()

    (ended,) = wait_until_terminal(store, [job.id], workers, timeout_s=120)
    attempts = store.list_attempts(job.id)
    assert [a.status for a in attempts] == [AttemptStatus.SUCCEEDED], attempts[0].failure_summary
    assert ended.status is JobStatus.SUCCEEDED
    assert attempts[0].engine_id == frozen.engine_id
    assert store.get_state(store.get_connection("s").id)[0]["stream"]["stream_state"]["cursor"] == 6
    assert left_running(attempts) == []
