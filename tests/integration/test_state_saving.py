"""How an engine saves a sync's confirmed states: coalesced by FERRYMAN_STATE_FLUSH_S, saved at
each engine heartbeat and at the attempt's end, and what a SIGKILLed worker leaves for the next
attempt. Real store (SQLite), real connector processes (the scripted source, the built-in JSONL
destination), real ``ferryman worker`` processes for the crash."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ferryman.clock import ManualClock
from ferryman.engines.local import LocalEngine
from ferryman.jobs.retry import RetryPolicy
from ferryman.jobs.states import AttemptStatus, JobStatus
from ferryman.service import JobService
from ferryman.store import open_store
from ferryman.store.base import Job, JobStore
from tests.integration.engine_kinds import Workers, engine_env, engine_kind, wait_until_terminal
from tests.integration.test_engine import LIMITS, scripted_connection, settings

__all__ = ["engine_env", "engine_kind"]  # fixtures used here

HOUR_S = 3600.0


def checkpoints(count: int) -> list[dict[str, Any]]:
    """``count`` records of users, each followed by a STATE (cursor = records so far)."""
    return [step for _ in range(count) for step in ({"records": 1}, {"state": {"name": "users"}})]


def cursor(store: JobStore, connection_id: int) -> int:
    state = store.get_state(connection_id)
    return int(state[0]["stream"]["stream_state"]["cursor"]) if state else 0


def held_service(store: JobStore, home: Path, flush_s: float) -> JobService:
    """A service whose engine's clock never moves and heartbeats once: only the end of an
    attempt (or a test calling save_states) saves a state the interval holds back."""
    config = dataclasses.replace(settings(home), state_flush_s=flush_s)
    engine = LocalEngine(
        store,
        config,
        limits=LIMITS,
        retry=RetryPolicy(backoff_min_s=0),
        clock=ManualClock(),
        heartbeat_interval_s=HOUR_S,
        poll_interval_s=0.05,
    )
    return JobService(store, config, engine)


def count_state_writes(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the store's save_state calls (it still saves: a real store, counted)."""
    writes = [0]
    save = store.save_state

    def counted(*args: Any, **kwargs: Any) -> None:
        writes[0] += 1
        save(*args, **kwargs)

    monkeypatch.setattr(store, "save_state", counted)
    return writes


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return open_store(f"sqlite:///{tmp_path / 'ferryman.db'}")


def test_four_hundred_checkpoints_are_a_few_store_writes_and_the_last_is_saved(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = held_service(store, tmp_path, flush_s=HOUR_S)
    scripted_connection(service, tmp_path, checkpoints(400))
    connection = store.get_connection("s")
    writes = count_state_writes(store, monkeypatch)

    job = service.run(service.enqueue_replication("s"), timeout_s=60)

    assert job.status is JobStatus.SUCCEEDED
    (attempt,) = store.list_attempts(job.id)
    assert (attempt.output or {})["states_committed"] == 400
    assert writes[0] <= 2  # the first state at once, the last at the end: not one per state
    assert cursor(store, connection.id) == 400
    (stats,) = store.list_stream_stats(attempt.id)
    assert stats.records_committed == 400


def test_each_state_is_written_with_an_interval_of_zero(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = held_service(store, tmp_path, flush_s=0.0)
    scripted_connection(service, tmp_path, checkpoints(40))
    writes = count_state_writes(store, monkeypatch)

    assert service.run(service.enqueue_replication("s"), timeout_s=60).status is JobStatus.SUCCEEDED
    assert writes[0] == 40


def test_the_engine_saves_the_confirmed_state_when_it_heartbeats(store: JobStore, tmp_path: Path) -> None:
    """The source blocks after 50 checkpoints until the store shows the 50th."""
    go = tmp_path / "go"
    service = held_service(store, tmp_path, flush_s=HOUR_S)
    steps = [*checkpoints(50), {"wait_for_file": str(go), "timeout": 60}, *checkpoints(1)]
    scripted_connection(service, tmp_path, steps)
    connection = store.get_connection("s")
    engine = service._engine()
    job = service.enqueue_replication("s")
    ended: list[Job] = []
    runner = threading.Thread(target=lambda: ended.append(service.run(job, timeout_s=120)))
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while cursor(store, connection.id) < 50 and time.monotonic() < deadline:
            engine.save_states()  # what each heartbeat does
            time.sleep(0.05)
        assert cursor(store, connection.id) == 50
    finally:
        go.touch()
        runner.join()
    assert ended[0].status is JobStatus.SUCCEEDED
    assert cursor(store, connection.id) == 51


@pytest.mark.parametrize("engine_kind", ["local"], indirect=True)
def test_a_sigkilled_worker_leaves_its_last_confirmed_state_for_the_next_attempt(
    engine_env: dict[str, str], tmp_path: Path
) -> None:
    """200 checkpoints in a burst, then the source waits: the last of them is held back by the
    interval and must reach the store by the clock alone (the worker's engine heartbeats only
    once), before the worker is killed. The retry, by another worker, starts from it."""
    url = f"sqlite:///{tmp_path / 'ferryman.db'}"
    store = open_store(url)
    home = Path(engine_env["FERRYMAN_HOME"])
    go, state_copy = tmp_path / "go", tmp_path / "given-state.json"
    steps = [*checkpoints(200), {"wait_for_file": str(go), "timeout": 120}, *checkpoints(1)]
    service = JobService(store, settings(home), LocalEngine(store, settings(home), limits=LIMITS))
    scripted_connection(service, tmp_path, steps)
    source = store.get_actor("source", "s-src")
    store.update_actor_config(source.id, {"steps": steps, "state_copy": str(state_copy)})
    connection = store.get_connection("s")
    workers = Workers(url, engine_env)
    try:
        doomed = workers.start(FERRYMAN_STATE_FLUSH_S="0.5", FERRYMAN_ENGINE_HEARTBEAT_S=str(HOUR_S))
        job = JobService(store, settings(home)).enqueue_replication("s")
        deadline = time.monotonic() + 60
        while cursor(store, connection.id) < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cursor(store, connection.id) == 200, workers.stderr()
        workers.kill(doomed)
        go.touch()
        workers.start()  # recovers the dead worker's attempt at once, then runs the retry

        (finished,) = wait_until_terminal(store, [job.id], workers, timeout_s=120)
    finally:
        workers.close()

    assert finished.status is JobStatus.SUCCEEDED
    first, second = store.list_attempts(job.id)
    assert first.status is AttemptStatus.FAILED and second.status is AttemptStatus.SUCCEEDED
    given = json.loads(state_copy.read_text())
    assert [m["stream"]["stream_state"]["cursor"] for m in given] == [200]
