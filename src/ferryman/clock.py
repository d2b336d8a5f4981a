"""Time, injected: engines, schedulers and dispatchers take a Clock so they are tested without
sleeping.

Some questions are never answered by a host's own clock, but by the store's time (Postgres'
``clock_timestamp()``; SQLite's ``'now'``), so hosts whose clocks disagree still agree:

* whether an engine is alive: heartbeats are stamped, and found stale, by it
  (``JobStore.heartbeat``);
* whether a retry's backoff is over: ``JobStore.schedule_retry`` counts it from the store's time,
  ``JobStore.claim`` compares with it;
* whether a connection's scheduled run is due: a Scheduler given no Clock reads the store's time
  once per pass (:class:`StoreClock`), and the job service plans a connection's next run from it
  when the connection is made, re-scheduled or made active again;
* in the Temporal workers' sweep, whether a pending job is old enough for its missing workflow
  to be started, and when to ask Temporal again about a job;
* how old a job is, and whether its failure counts after a connection was made active again:
  a job's ``created_at`` is stamped by the database in the insert that queues it
  (``JobStore.enqueue``), and ``/metrics`` counts the oldest pending job's age to the store's
  time read with its figures.

What only one host reads back, or only shows (an attempt's start and end, a cancel's
``updated_at``, the ``created_at`` of actors and connections), is still stamped by that host's
clock: docs/reliability.md lists each stamp and why.

So a host whose clock is fast or slow never takes a live engine for dead, starts a retry or a
scheduled sync early or late, nor skips a cron slot. An injected Clock (a ManualClock in tests)
still wins wherever one is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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


class StoreClock:
    """The store's time (``JobStore.now``: anything with a ``now()``), read by :meth:`read` and
    carried on from there by this host's monotonic clock. A scheduler pass asks the time for every
    connection it decides on, yet costs one query: it calls ``read()`` once at its start.

    The host's wall clock plays no part: only the monotonic clock's rate, over the seconds between
    two reads, which no NTP step or wrong setting moves."""

    def __init__(self, store: Clock, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._monotonic = monotonic
        self._read: tuple[datetime, float] | None = None

    def read(self) -> datetime:
        """Ask the store (one query) and count on from its answer."""
        now = self._store.now()
        self._read = (now, self._monotonic())
        return now

    def now(self) -> datetime:
        if self._read is None:
            return self.read()
        then, at = self._read
        return then + timedelta(seconds=self._monotonic() - at)
