"""Confirmed states, saved by the clock rather than one by one.

A source may checkpoint every few records (airbyte-source-faker: every 100), and saving each
state the destination confirms cost a store write apiece: most of the worker's CPU on such a
sync. :class:`StateCheckpoints` keeps the latest confirmed commit (the state merged per stream,
as the StateAggregator holds it, with the per-stream stats) and hands it to ``save``:

    a state is confirmed      saved if ``interval_s`` has passed since the last save (the first
                              at once; every one when ``interval_s`` is 0)
    save_if_due()             the worker's supervisor, when it wakes: a waiting state whose
                              interval has passed
    flush()                   now: a stream's status changed, the engine heartbeats, the
                              attempt ends (success, failure, cancel, Ctrl-C)

So a crash loses at most about ``interval_s`` of confirmed progress, and the next attempt starts
from the last save. Only what the destination confirmed is ever saved, never a state ahead of
committed records. Saves run one at a time, each taking the latest commit when it starts, so an
older state never overwrites a newer one; a save that raises leaves its commit waiting for the
next try.

A commit may be handed over as a function that makes it (:meth:`confirmed`): the state merged over
every stream and each stream's stats cost as much as there are streams, so they are made only
when a save takes them, never for each confirmed state (a source with 5,000 streams and a state
each made that quadratic). For the same reason a flush asked for by a stream's status change
waits, after a save, four times as long as that save took (:meth:`flush_gap_s`): a few
milliseconds for a few streams, and thousands of streams ending one after another share their
saves, which then take at most a fifth of the time, instead of one save of all streams apiece.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from ferryman.clock import Clock, SystemClock
from ferryman.workers.models import StateCallback, StateCommit

DEFAULT_FLUSH_S = 1.0
# After a save, a status change's flush waits this many times as long as the save took.
FLUSH_GAP_FACTOR = 4.0

# A commit, or what makes it when a save takes it.
CommitSource = StateCommit | Callable[[], StateCommit]


class StateCheckpoints:
    """Coalesces confirmed states for ``save`` (None: keep them, save nothing)."""

    def __init__(
        self,
        save: StateCallback | None,
        interval_s: float = 0.0,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._save = save
        self._monotonic = monotonic  # how long saves take, for the gap behind them
        self.interval_s = interval_s
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()  # guards what follows
        self._saving = threading.Lock()  # one save at a time, in order
        self._latest: CommitSource | None = None
        self._confirmed = 0  # states confirmed so far
        self._saved = 0  # ... of which the last save included this many
        self._saved_at: datetime | None = None
        self._gap_ends = 0.0  # time.monotonic() before which a status change's flush waits
        self.saves = 0

    @property
    def saves_anything(self) -> bool:
        return self._save is not None

    def confirmed(self, commit: CommitSource) -> bool:
        """The destination confirmed a state: keep it, and save it if it is due; True if it saved.
        ``commit`` may be a function that makes the commit: it is called only by a save."""
        with self._lock:
            self._latest = commit
            self._confirmed += 1
        return self._flush(due_only=True)

    def flush(self) -> bool:
        """Save the latest confirmed state now, unless it is saved already; True if it saved."""
        return self._flush(due_only=False)

    def _flush(self, due_only: bool) -> bool:
        if self._save is None or (due_only and self.seconds_to_due() != 0.0):
            return False  # the record path's common case: no wait for a save in progress
        with self._saving:
            # Due-ness is decided here, under the save lock: a save that waited for another one
            # to end (the record path's and the supervisor's at once) finds the interval begun.
            with self._lock:
                commit, count = self._latest, self._confirmed
                if commit is None or count == self._saved:
                    return False
                if due_only and self._due_in_locked() != 0.0:
                    return False
            began = self._monotonic()
            try:
                self._save(commit if isinstance(commit, StateCommit) else commit())
            except BaseException:
                with self._lock:  # tried again after the interval, not at every look
                    self._saved_at = self._clock.now()
                raise
            ended = self._monotonic()
            with self._lock:
                self._saved, self._saved_at = count, self._clock.now()
                self._gap_ends = ended + FLUSH_GAP_FACTOR * (ended - began)
                self.saves += 1
            return True

    def flush_gap_s(self) -> float:
        """How long a flush for a stream's status change should wait: 0 unless a save ended
        less than four times its own duration ago."""
        return max(0.0, self._gap_ends - self._monotonic())

    def save_if_due(self) -> bool:
        """Save a waiting state whose interval has passed (the supervisor calls this)."""
        return self._flush(due_only=True)

    def seconds_to_due(self) -> float | None:
        """How long until the waiting state is due; None when nothing waits to be saved."""
        with self._lock:
            if self._save is None or self._confirmed == self._saved:
                return None
            return self._due_in_locked()

    def _due_in_locked(self) -> float:
        saved_at = self._saved_at
        if saved_at is None or self.interval_s <= 0:
            return 0.0
        return max(0.0, self.interval_s - (self._clock.now() - saved_at).total_seconds())


StateSink = StateCallback | StateCheckpoints


def checkpoints_for(on_state: StateSink | None) -> StateCheckpoints:
    """What the worker saves through: the caller's own, or every state to a plain callback."""
    return on_state if isinstance(on_state, StateCheckpoints) else StateCheckpoints(on_state)
