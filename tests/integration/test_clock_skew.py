"""Engines on hosts whose clocks disagree, sharing one PostgreSQL store: whether an engine is alive
is judged by the store's clock, so a host's wrong clock never makes its live attempts look dead.
Real Postgres, two real local engines (each given its own clock), real connector processes."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from ferryman.clock import OffsetClock
from ferryman.engines.local import LocalEngine
from ferryman.jobs.retry import RetryPolicy
from ferryman.jobs.states import AttemptStatus, JobStatus
from ferryman.service import JobService
from ferryman.store import open_store
from ferryman.store.base import Job
from tests.integration.test_engine import LIMITS, postgres_url, scripted_connection, settings
from tests.integration.test_state_saving import _until, checkpoints, cursor

__all__ = ["postgres_url"]  # fixtures used here

FIVE_MINUTES_S = 300.0


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
