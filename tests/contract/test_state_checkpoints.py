"""Confirmed states saved by time, not one by one: the sync worker with real connector
processes (the scripted source and destination, over every launcher) and a StateCheckpoints
whose clock never moves, so only a status change or the end of the sync can save a waiting
state. What a user would see: a store written a handful of times for hundreds of checkpoints,
and the last confirmed state saved however the sync ends."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ferryman.clock import ManualClock
from ferryman.jobs.failures import FailureOrigin
from ferryman.workers import StateCheckpoints, StateCommit
from ferryman.workers.models import ReplicationStatus, SyncProgress
from tests.contract.test_replication import (
    USERS,
    Stream,
    Syncs,
    batches,
    forever,
    records,
    stream_state,
    syncs,
)

__all__ = ["syncs"]  # the fixture used here

ORDERS: Stream = ("orders", None)
HOUR_S = 3600.0


def status(stream: Stream, value: str) -> dict[str, Any]:
    return {"stream_status": {"name": stream[0], "namespace": stream[1], "status": value}}


def held_for_an_hour(saved: list[StateCommit]) -> StateCheckpoints:
    """Checkpoints that save into ``saved``; their clock never reaches the interval."""
    return StateCheckpoints(saved.append, interval_s=HOUR_S, clock=ManualClock())


def cursor(commit: StateCommit, stream: Stream = USERS) -> int:
    for message in commit.aggregated:
        if message["stream"]["stream_descriptor"]["name"] == stream[0]:
            return int(message["stream"]["stream_state"]["cursor"])
    return 0


def test_three_hundred_checkpoints_make_a_handful_of_saves_and_the_last_is_saved(syncs: Syncs) -> None:
    saved: list[StateCommit] = []
    steps = [status(USERS, "STARTED"), *batches(USERS, 300, 1), status(USERS, "COMPLETE")]

    run = syncs.run(steps, checkpoints=held_for_an_hour(saved))

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert run.output.states_committed == 300
    # The first state at once; a status change saves what waits and the next state confirmed;
    # the end of the sync saves the rest. Never one save per checkpoint.
    assert 1 <= len(saved) <= 4, [cursor(c) for c in saved]
    last = saved[-1]
    assert last.aggregated == [stream_state(USERS, 300)] == run.output.state
    assert [(s.records_emitted, s.records_committed) for s in last.streams] == [(300, 300)]


def test_a_stream_status_change_saves_the_confirmed_state_while_the_sync_goes_on(
    syncs: Syncs, tmp_path: Path
) -> None:
    """The source blocks after users is COMPLETE until users' last state is saved."""
    marker = tmp_path / "users-saved"
    saved: list[StateCommit] = []

    def save(commit: StateCommit) -> None:
        saved.append(commit)
        if cursor(commit) == 10:
            marker.touch()

    steps = [
        *batches(USERS, 10, 5),
        status(USERS, "COMPLETE"),
        {"wait_for_file": str(marker), "timeout": 20},
        *batches(ORDERS, 4, 2),
    ]
    checkpoints = StateCheckpoints(save, interval_s=HOUR_S, clock=ManualClock())

    run = syncs.run(steps, streams=(USERS, ORDERS), checkpoints=checkpoints)

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert cursor(saved[-1], ORDERS) == 4
    assert any(cursor(c) == 10 and cursor(c, ORDERS) == 0 for c in saved)  # saved mid-sync


def test_a_failed_sync_saves_its_last_confirmed_state(syncs: Syncs) -> None:
    saved: list[StateCommit] = []
    steps = [*batches(USERS, 50, 1), records(USERS, 3), {"exit": 1}]

    run = syncs.run(steps, checkpoints=held_for_an_hour(saved))

    assert run.output.status is ReplicationStatus.FAILED
    assert run.output.state == [stream_state(USERS, 50)]
    assert saved[-1].aggregated == run.output.state
    assert len(saved) <= 2


def test_a_cancelled_sync_saves_its_last_confirmed_state(syncs: Syncs) -> None:
    saved: list[StateCommit] = []
    cancel = threading.Event()

    def on_progress(progress: SyncProgress) -> None:
        if progress.states_committed > 20:
            cancel.set()

    run = syncs.run([forever()], cancel=cancel, on_progress=on_progress, checkpoints=held_for_an_hour(saved))

    assert run.output.status is ReplicationStatus.CANCELLED
    assert run.output.states_committed > 20
    assert saved[-1].aggregated == run.output.state
    assert len(saved) <= 2


def test_states_a_destination_never_confirmed_are_never_saved(syncs: Syncs) -> None:
    saved: list[StateCommit] = []
    steps = [*batches(USERS, 20, 1), status(USERS, "COMPLETE")]

    run = syncs.run(steps, destination={"echo_states": False}, checkpoints=held_for_an_hour(saved))

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert saved == []


def test_an_interval_of_zero_saves_every_state_in_order(syncs: Syncs) -> None:
    """FERRYMAN_STATE_FLUSH_S=0: each state as it is confirmed, as before coalescing."""
    saved: list[StateCommit] = []
    steps = [*batches(USERS, 200, 1)]
    checkpoints = StateCheckpoints(saved.append, interval_s=0.0)

    run = syncs.run(steps, checkpoints=checkpoints)

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert [cursor(c) for c in saved] == list(range(1, 201))


class StoreAway(Exception):
    """What the engine's save raises while its store does not answer (a real outage is
    tests/integration/test_engine_kinds.py's; here the save callback is the boundary)."""


def test_saves_that_fail_mid_sync_are_tried_again_and_the_sync_goes_on(syncs: Syncs) -> None:
    """The store refuses the saves of cursors 10 to 30, then answers: the sync is not failed
    for it, the log says so once and says when saving works again, the last state is saved."""
    saved: list[StateCommit] = []

    def save(commit: StateCommit) -> None:
        if 10 <= cursor(commit) <= 30:
            raise StoreAway("the store postgresql://127.0.0.1/x cannot be used: connection refused\nmore")
        saved.append(commit)

    run = syncs.run([*batches(USERS, 50, 1)], checkpoints=StateCheckpoints(save, interval_s=0.0))

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert run.output.failures == []
    assert saved[-1].aggregated == [stream_state(USERS, 50)] == run.output.state
    said = run.log_messages("worker")
    failed = [m for m in said if "saving state failed" in m]
    assert len(failed) == 1 and "connection refused" in failed[0] and "more" not in failed[0], said
    assert any("state saved again" in m for m in said), said


def test_a_state_that_cannot_be_saved_by_the_end_fails_the_sync(syncs: Syncs) -> None:
    """Nothing reported that did not happen: the destination confirmed 50 states, but from
    cursor 40 on none could be saved, so the sync is not a success."""
    saved: list[StateCommit] = []

    def save(commit: StateCommit) -> None:
        if cursor(commit) >= 40:
            raise StoreAway("the store cannot be used: connection refused")
        saved.append(commit)

    run = syncs.run([*batches(USERS, 50, 1)], checkpoints=StateCheckpoints(save, interval_s=0.0))

    assert run.output.status is ReplicationStatus.FAILED
    (failure,) = run.output.failures
    assert failure.origin is FailureOrigin.PERSISTENCE and "connection refused" in failure.message
    assert cursor(saved[-1]) == 39
