"""StateCheckpoints: confirmed states saved by the clock (a ManualClock), not one by one."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ferryman.clock import ManualClock
from ferryman.workers.checkpoints import StateCheckpoints, checkpoints_for
from ferryman.workers.models import StateCommit


def commit(cursor: int) -> StateCommit:
    state: dict[str, Any] = {
        "type": "STREAM",
        "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"cursor": cursor}},
    }
    return StateCommit(state, [state], [])


def cursors(saved: list[StateCommit]) -> list[int]:
    return [c.aggregated[0]["stream"]["stream_state"]["cursor"] for c in saved]


def test_states_confirmed_within_the_interval_are_saved_once_it_has_passed() -> None:
    clock, saved = ManualClock(), []
    checkpoints = StateCheckpoints(saved.append, interval_s=1.0, clock=clock)

    for cursor in range(1, 101):  # a hundred checkpoints within a second
        checkpoints.confirmed(commit(cursor))
    assert cursors(saved) == [1]  # the first at once, the rest wait
    assert not checkpoints.save_if_due()
    assert checkpoints.seconds_to_due() == 1.0

    clock.advance(1.0)
    assert checkpoints.seconds_to_due() == 0.0
    assert checkpoints.save_if_due()
    assert cursors(saved) == [1, 100]  # only the latest of what waited
    assert checkpoints.seconds_to_due() is None  # nothing waits

    checkpoints.confirmed(commit(101))
    clock.advance(1.0)
    checkpoints.confirmed(commit(102))  # due when it comes: saved by the confirmation itself
    assert cursors(saved) == [1, 100, 102]


def test_flush_saves_what_waits_and_nothing_twice() -> None:
    saved: list[StateCommit] = []
    checkpoints = StateCheckpoints(saved.append, interval_s=3600.0, clock=ManualClock())
    assert not checkpoints.flush()  # nothing confirmed yet: nothing to save
    checkpoints.confirmed(commit(1))
    checkpoints.confirmed(commit(2))
    assert checkpoints.flush()
    assert not checkpoints.flush()
    assert cursors(saved) == [1, 2]
    assert checkpoints.saves == 2


def test_an_interval_of_zero_saves_every_state() -> None:
    saved: list[StateCommit] = []
    checkpoints = StateCheckpoints(saved.append, interval_s=0.0, clock=ManualClock())
    for cursor in range(1, 6):
        checkpoints.confirmed(commit(cursor))
    assert cursors(saved) == [1, 2, 3, 4, 5]


def test_a_plain_callback_hears_every_state() -> None:
    saved: list[StateCommit] = []
    checkpoints = checkpoints_for(saved.append)
    for cursor in range(1, 4):
        checkpoints.confirmed(commit(cursor))
    assert cursors(saved) == [1, 2, 3]
    assert checkpoints_for(checkpoints) is checkpoints


def test_a_failed_save_keeps_the_state_for_the_next_try_after_the_interval() -> None:
    clock, saved = ManualClock(), []
    broken = [True]

    def save(commit: StateCommit) -> None:
        if broken[0]:
            raise OSError("database is locked")
        saved.append(commit)

    checkpoints = StateCheckpoints(save, interval_s=1.0, clock=clock)
    with pytest.raises(OSError):
        checkpoints.confirmed(commit(1))
    assert checkpoints.seconds_to_due() == 1.0  # not retried at every look
    broken[0] = False
    clock.advance(1.0)
    assert checkpoints.save_if_due()
    assert cursors(saved) == [1]


def test_without_a_saver_nothing_is_due() -> None:
    checkpoints = StateCheckpoints(None, interval_s=1.0, clock=ManualClock())
    checkpoints.confirmed(commit(1))
    assert checkpoints.seconds_to_due() is None
    assert not checkpoints.flush()


class _WatchedLock:
    """A lock that tells when a second caller waits on it. The race below (a state confirmed
    while the first save is still writing) depends on thread timing that a real run hits only
    under load; this makes the interleaving certain."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waiting = threading.Event()

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self.waiting.set()
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_a_state_confirmed_during_the_first_save_waits_for_the_interval() -> None:
    """The first save was still writing (slow store) when the next state came: that state found
    the interval not begun and was saved right after, one store write more per sync than the
    interval allows (seen as 3 writes where 2 were due, under load)."""
    saved: list[StateCommit] = []
    lock = _WatchedLock()

    def slow_save(c: StateCommit) -> None:
        if not saved:  # the first save: the second state comes while it writes
            second.start()
            assert lock.waiting.wait(10)
        saved.append(c)

    checkpoints = StateCheckpoints(slow_save, interval_s=3600.0, clock=ManualClock())
    checkpoints._saving = lock  # type: ignore[assignment]
    second = threading.Thread(target=lambda: checkpoints.confirmed(commit(2)))
    checkpoints.confirmed(commit(1))
    second.join(10)
    assert cursors(saved) == [1]  # the second waits for the interval, not one write apiece
    assert checkpoints.flush()  # and the attempt's end saves it
    assert cursors(saved) == [1, 2]


def test_a_commit_handed_over_as_a_function_is_made_only_by_a_save() -> None:
    """The worker hands each confirmed state over as a function: what a save writes (the state
    of every stream, every stream's stats) was made for each state, so a source with 5,000
    streams and a state apiece spent the sync building 25 million stream stats."""
    clock, saved, made = ManualClock(), [], []

    def maker(cursor: int) -> Any:
        def make() -> StateCommit:
            made.append(cursor)
            return commit(cursor)

        return make

    checkpoints = StateCheckpoints(saved.append, interval_s=1.0, clock=clock)
    for cursor in range(1, 1001):
        checkpoints.confirmed(maker(cursor))
    assert made == [1] and cursors(saved) == [1]  # the first save at once; the others only kept
    assert checkpoints.flush()
    assert made == [1, 1000] and cursors(saved) == [1, 1000]


def test_a_status_changes_flush_waits_four_times_as_long_as_the_last_save_took() -> None:
    """So thousands of streams ending one after another share saves that each write them all."""
    now = [100.0]

    def slow_save(_: StateCommit) -> None:
        now[0] += 0.5  # the save took half a second

    checkpoints = StateCheckpoints(slow_save, interval_s=1.0, clock=ManualClock(), monotonic=lambda: now[0])
    assert checkpoints.flush_gap_s() == 0.0  # nothing saved yet
    checkpoints.confirmed(commit(1))
    assert checkpoints.flush_gap_s() == 2.0
    now[0] += 1.5
    assert checkpoints.flush_gap_s() == 0.5
    now[0] += 0.5
    assert checkpoints.flush_gap_s() == 0.0
