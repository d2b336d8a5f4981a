"""How an engine saves a sync's confirmed states: coalesced by FERRYMAN_STATE_FLUSH_S, saved at
each engine heartbeat and at the attempt's end, and what a SIGKILLed worker leaves for the next
attempt. Real store (SQLite), real connector processes (the scripted source, the built-in JSONL
destination), real ``ferryman worker`` processes for the crash."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ferryman.clock import ManualClock
from ferryman.engines.local import LocalEngine
from ferryman.jobs.retry import RetryPolicy
from ferryman.jobs.states import AttemptStatus, JobStatus
from ferryman.service import JobService
from ferryman.store import open_store
from ferryman.store.base import Attempt, Job, JobStore
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
    """Counts the store's writes of a sync's state (it still saves: a real store, counted)."""
    writes = [0]
    save = store.save_progress

    def counted(*args: Any, **kwargs: Any) -> bool:
        writes[0] += kwargs.get("state", args[3] if len(args) > 3 else None) is not None
        return save(*args, **kwargs)

    monkeypatch.setattr(store, "save_progress", counted)
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


def test_a_worker_back_after_another_engine_failed_its_attempt_stops_and_saves_nothing(
    store: JobStore, tmp_path: Path
) -> None:
    """Engine A runs a sync whose source waits after 10 checkpoints. Engine B's stale limit is a
    millisecond, so A's heartbeats look stale to it (as when A is cut off from the store): B fails A's
    attempt and the job's retry commits cursor 30. When A's source goes on, A must neither save
    its cursor 11 over the retry's 30 nor keep its connectors running: it hears from its next
    heartbeat that the attempt is no longer its own. Before, it ran the sync to its end and saved
    its state over the newer one."""
    go = tmp_path / "go"
    config = settings(tmp_path / "home")
    steps = [*checkpoints(10), {"wait_for_file": str(go), "timeout": 60}, *checkpoints(1)]
    start = ManualClock().now()
    options: dict[str, Any] = {"limits": LIMITS, "retry": RetryPolicy(backoff_min_s=0)}
    # Engine A as if on another host: B cannot kill its connectors, only fail its attempt.
    engine_a = LocalEngine(
        store,
        config,
        clock=ManualClock(start),
        engine_id="other-host:1:a",
        heartbeat_interval_s=0.05,
        poll_interval_s=0.05,
        **options,
    )
    scripted_connection(JobService(store, config, engine_a), tmp_path, steps)
    connection = store.get_connection("s")
    job = JobService(store, config).enqueue_replication("s")
    engine_b = LocalEngine(store, config, clock=ManualClock(start), stale_after_s=0.001, **options)
    ended: list[Job] = []
    runner = threading.Thread(target=lambda: ended.extend(engine_a.run_jobs([job.id], timeout_s=120)))
    runner.start()
    try:
        _until(lambda: cursor(store, connection.id) == 10, "engine A saves cursor 10")
        (first,) = store.list_attempts(job.id)
        recovered: list[Attempt] = []  # until a pass falls more than a millisecond after A's heartbeat
        _until(
            lambda: bool(recovered.extend(engine_b.recover(sweep=False)) or recovered), "B fails A's attempt"
        )
        assert [attempt.id for attempt in recovered] == [first.id]
        [(_, second)] = store.claim(engine_b.engine_id, LIMITS, start, engine_b.log_path)
        newer = [
            {
                "type": "STREAM",
                "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"cursor": 30}},
            }
        ]
        store.save_state(connection.id, newer, job.id)  # the retry commits cursor 30
        go.touch()  # A's source goes on, if A still lets it
        _until(lambda: not engine_a.running_attempt_ids(), "engine A stops the attempt it lost")
        assert cursor(store, connection.id) == 30
        assert all(_gone(pid) for pid in first.pids or store.list_attempts(job.id)[0].pids)
        store.succeed_attempt(second, {}, start + timedelta(seconds=5))
    finally:
        go.touch()
        runner.join(timeout=120)
    assert ended and ended[0].status is JobStatus.SUCCEEDED
    assert cursor(store, connection.id) == 30
    first, second = store.list_attempts(job.id)
    assert (first.status, second.status) == (AttemptStatus.FAILED, AttemptStatus.SUCCEEDED)
    assert "stopped heartbeating" in json.dumps(first.failure_summary)
    assert "no longer running in the store" in Path(first.log_path).read_text()


def _until(check: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except FileNotFoundError:
        return True


def test_a_save_writes_the_stats_of_the_streams_that_changed_since_the_last(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each stream's status change saves the confirmed state, and each save wrote every stream's
    stats: with 5,000 streams of one record each a sync took minutes, most of it writing rows
    that had not changed."""
    from ferryman.engines.execution import _ProgressSaver
    from ferryman.workers.models import StateCommit, StreamStats
    from tests.contract.store_support import running_sync

    service = held_service(store, tmp_path, flush_s=HOUR_S)
    scripted_connection(service, tmp_path, checkpoints(1))
    connection = store.get_connection("s")
    job, attempt = running_sync(store, scope=str(connection.id))  # type: ignore[arg-type]
    written: list[list[str]] = []
    save = store.save_progress

    def counted(attempt_id: int, stats: list[Any], *args: Any, **kwargs: Any) -> bool:
        written.append([stat.name for stat in stats])
        return save(attempt_id, stats, *args, **kwargs)

    monkeypatch.setattr(store, "save_progress", counted)
    saver = _ProgressSaver(store, attempt.id, connection.id, job.id, lost=lambda: None)
    streams = [StreamStats(f"s{n}", None, 1, 10, 0, 0) for n in range(300)]
    state = {"type": "STREAM", "stream": {"stream_descriptor": {"name": "s0"}, "stream_state": {"c": 1}}}

    saver.commit(StateCommit(state, [state], streams))
    streams[7] = StreamStats("s7", None, 1, 10, 1, 10)
    saver.commit(StateCommit(state, [state], streams))
    saver.commit(StateCommit(state, [state], streams))

    assert [len(names) for names in written] == [300, 1, 0]
    assert written[1] == ["s7"]
    saved = {stat.name: stat.records_committed for stat in store.list_stream_stats(attempt.id)}
    assert len(saved) == 300 and saved["s7"] == 1 and saved["s8"] == 0


def test_a_source_with_hundreds_of_streams_saves_them_all_and_their_stats_only_as_they_change(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole sync of many streams: every stream's state and stats saved, and no stream's stats
    written more often than its figures change."""
    streams = 300
    service = held_service(store, tmp_path, flush_s=HOUR_S)
    service.create_actor("source", "many", "builtin:source-bench", {"count": 1, "streams": streams})
    service.create_actor("destination", "void", "builtin:destination-devnull", {})
    service.create_connection("m", "many", "void")
    rows = [0]
    save = store.save_progress

    def counted(attempt_id: int, stats: list[Any], *args: Any, **kwargs: Any) -> bool:
        rows[0] += len(stats)
        return save(attempt_id, stats, *args, **kwargs)

    monkeypatch.setattr(store, "save_progress", counted)

    job = service.run(service.enqueue_replication("m"), timeout_s=120)

    assert job.status is JobStatus.SUCCEEDED
    (attempt,) = store.list_attempts(job.id)
    stats = store.list_stream_stats(attempt.id)
    assert len(stats) == streams and all(s.records_committed == 1 for s in stats)
    assert len(store.get_state(store.get_connection("m").id)) == streams
    # A stream's figures are written when they change: at most zero, emitted, committed, and
    # the attempt's end writes them all once more. Before, every save wrote all 300 (5 saves here).
    assert rows[0] <= 4 * streams, rows[0]
