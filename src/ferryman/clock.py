"""Time, injected: engines take a Clock so backoff and retries are tested without sleeping.

Whether an engine is alive is not judged by any engine's Clock: heartbeats are stamped, and
found stale, by the store's own time (see ``JobStore.heartbeat``), so hosts whose clocks
disagree never take each other for dead.
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
