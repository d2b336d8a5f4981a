"""Time, injected: engines, schedulers and dispatchers take a Clock so they are tested without
sleeping.

Two questions are never answered by any engine's Clock, but by the store's own time: whether an
engine is alive (heartbeats are stamped, and found stale, by it: ``JobStore.heartbeat``) and
whether a retry's backoff is over (``JobStore.schedule_retry`` counts it from the store's time,
``JobStore.claim`` compares with it). So hosts whose clocks disagree never take each other for
dead, nor start a retry early or late. The Temporal workers' sweep judges by it too: whether a
pending job is old enough for its missing workflow to be started, and when to ask Temporal again
about a job.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


class OffsetClock:
    """The system clock, ``offset_s`` seconds off: a host whose clock is wrong, without touching
    this machine's."""

    def __init__(self, offset_s: float) -> None:
        self._offset = timedelta(seconds=offset_s)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset
