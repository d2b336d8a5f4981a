"""Engines on hosts whose clocks disagree, sharing one store: whether an engine is alive, and
whether a retry's backoff is over, is judged by the store's clock, so a host's wrong clock never
makes its live attempts look dead, nor starts a retry early or late. Real Postgres (and SQLite,
where one file stands for the shared store), two real local engines (each given its own clock),
real connector processes."""

from __future__ import annotations

import functools
import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from _pytest.fixtures import FixtureRequest

from ferryman.clock import OffsetClock
from ferryman.engines.local import LocalEngine
from ferryman.jobs.retry import RetryPolicy
from ferryman.jobs.states import AttemptStatus, JobStatus
from ferryman.service import JobService
from ferryman.store import open_store
from ferryman.store.base import Job, JobStore
from tests.integration.test_engine import LIMITS, postgres_url, scripted_connection, settings
from tests.integration.test_state_saving import _until, checkpoints, cursor

__all__ = ["postgres_url"]  # fixtures used here

FIVE_MINUTES_S = 300.0
# Long enough that the engine 5 minutes ahead asks well within it, short enough to wait out.
BACKOFF_S = 3.0


@pytest.mark.parametrize(
    ("runner_offset_s", "judge_offset_s"),
    [(-FIVE_MINUTES_S, 0.0), (0.0, FIVE_MINUTES_S)],
    ids=["runner-clock-5-min-behind", "other-engine-clock-5-min-ahead"],
)
def test_an_engine_on_a_host_with_a_wrong_clock_keeps_its_attempt_and_finishes_it(
    postgres_url: str, tmp_path: Path, runner_offset_s: float, judge_offset_s: float
) -> None:
    """Engine A runs a sync whose source waits after 5 checkpoints; engine B shares the store and
    its clock is 5 minutes off A's (past the 60 s stale limit). B's recovery pass must not take
    A for dead: A's attempt is neither failed as "stopped heartbeating" nor retried beside it, and
    it finishes. Before, each engine stamped heartbeats with its own clock and B judged them by
    its own: it failed A's live attempt and the job ran a second attempt."""
    store = open_store(postgres_url)
    go = tmp_path / "go"
    config = settings(tmp_path / "home")
    steps = [*checkpoints(5), {"wait_for_file": str(go), "timeout": 60}, *checkpoints(1)]
    options: dict[str, Any] = {"limits": LIMITS, "retry": RetryPolicy(backoff_min_s=0)}
    # A as if on another host: B could only fail its attempt, never kill its connectors.
    engine_a = LocalEngine(
        store,
        config,
        clock=OffsetClock(runner_offset_s),
        engine_id="other-host:1:a",
        heartbeat_interval_s=0.05,
        poll_interval_s=0.05,
        **options,
    )
    scripted_connection(JobService(store, config, engine_a), tmp_path, steps)
    connection = store.get_connection("s")
    job = JobService(store, config).enqueue_replication("s")
    engine_b = LocalEngine(store, config, clock=OffsetClock(judge_offset_s), **options)
    ended: list[Job] = []
    runner = threading.Thread(target=lambda: ended.extend(engine_a.run_jobs([job.id], timeout_s=120)))
    runner.start()
    try:
        _until(lambda: cursor(store, connection.id) == 5, "engine A saves cursor 5")
        (claimed,) = store.list_attempts(job.id)
        _until(
            lambda: store.list_attempts(job.id)[0].heartbeat_at != claimed.heartbeat_at,
            "engine A heartbeats its attempt",
        )
        assert engine_b.recover(sweep=False) == []
        assert engine_b.engine_gone(claimed) is False  # what a Temporal worker asks
        assert engine_b.tick() == 0  # a full pass: nothing to recover, nothing to claim
        go.touch()
    except BaseException:
        store.request_cancel(job.id)  # not left to wait out A's clock for its retry
        raise
    finally:
        go.touch()
        runner.join(timeout=120)
    assert ended and ended[0].status is JobStatus.SUCCEEDED
    (attempt,) = store.list_attempts(job.id)
    assert attempt.status is AttemptStatus.SUCCEEDED
    assert "stopped heartbeating" not in json.dumps(attempt.failure_summary)
    assert cursor(store, connection.id) == 6


def _ran_out(engine: LocalEngine, job_id: int) -> bool:
    """One pass that claims nothing; whether the engine's attempts have all ended."""
    engine.tick(only=[job_id], claim=False)
    return not engine.running_attempt_ids()


def _fails_and_waits(store: JobStore, engine: LocalEngine, job_id: int) -> None:
    """The engine's attempt fails; the job waits out BACKOFF_S from the store's time then."""
    before = store.now()
    _until(lambda: _ran_out(engine, job_id), "the attempt fails")
    waiting = store.get_job(job_id)
    due = waiting.next_attempt_at
    assert waiting.status is JobStatus.INCOMPLETE and due is not None
    backoff = timedelta(seconds=BACKOFF_S)
    assert before + backoff <= due <= store.now() + backoff  # the store's time, not the engine's


@pytest.mark.parametrize("store_kind", ["postgres", "sqlite"])
def test_a_retry_waits_out_its_backoff_by_the_stores_clock_whatever_each_engines_clock_says(
    store_kind: str, request: FixtureRequest, tmp_path: Path
) -> None:
    """Two engines, one 5 minutes behind, one 5 minutes ahead, each fail an attempt in turn; every
    backoff is 3 s. After the slow one's failure, the fast one must not claim the retry at once;
    after the fast one's, the slow one must claim it once the 3 s have passed by the store's
    clock. Before, the due time was the failing engine's clock plus the backoff, compared with the
    claiming engine's clock: the fast engine retried at once, the slow one waited 10 minutes."""
    url = (
        request.getfixturevalue("postgres_url")
        if store_kind == "postgres"
        else f"sqlite:///{tmp_path / 'f.db'}"
    )
    store: JobStore = open_store(url)
    go = tmp_path / "go"  # absent: an attempt's source fails at once; there: the attempt succeeds
    config = settings(tmp_path / "home")
    retry = RetryPolicy(sync_max_attempts=3, backoff_min_s=BACKOFF_S, backoff_base=1)
    options: dict[str, Any] = {"limits": LIMITS, "retry": retry, "poll_interval_s": 0.05}
    ahead = LocalEngine(
        store, config, clock=OffsetClock(FIVE_MINUTES_S), engine_id="fast-host:1:a", **options
    )
    behind = LocalEngine(
        store, config, clock=OffsetClock(-FIVE_MINUTES_S), engine_id="slow-host:1:b", **options
    )
    steps = [{"wait_for_file": str(go), "timeout": 0}, *checkpoints(1)]
    scripted_connection(JobService(store, config, ahead), tmp_path, steps)
    job = JobService(store, config).enqueue_replication("s")
    try:
        assert behind.tick(only=[job.id]) == 1
        _fails_and_waits(store, behind, job.id)
        assert ahead.tick(only=[job.id]) == 0  # 5 minutes ahead, yet the backoff is not over
        _until(lambda: ahead.tick(only=[job.id]) == 1, "the fast engine claims the retry when due", 30)
        _fails_and_waits(store, ahead, job.id)
        assert behind.tick(only=[job.id]) == 0  # nor early on this side
        go.touch()
        _until(lambda: behind.tick(only=[job.id]) == 1, "the slow engine claims the retry when due", 30)
        _until(lambda: _ran_out(behind, job.id), "the last attempt ends")
    except BaseException:
        store.request_cancel(job.id)
        for engine in (ahead, behind):
            engine.cancel(job.id)
            _until(functools.partial(_ran_out, engine, job.id), "its attempt stops")
        raise
    assert store.get_job(job.id).status is JobStatus.SUCCEEDED
    attempts = store.list_attempts(job.id)
    assert [(a.engine_id, a.status) for a in attempts] == [
        ("slow-host:1:b", AttemptStatus.FAILED),
        ("fast-host:1:a", AttemptStatus.FAILED),
        ("slow-host:1:b", AttemptStatus.SUCCEEDED),
    ]
