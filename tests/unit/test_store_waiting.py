"""The start-up wait for a store (store/waiting.py) on a fake clock: what a user reads while a
worker waits for hours for its database, and when it gives up."""

from __future__ import annotations

import itertools

import pytest

from ferryman.errors import StoreUnavailable
from ferryman.store.faults import unavailable
from ferryman.store.waiting import Stopped, open_store_waiting

STORE = "postgresql+psycopg://ferry:***@db:5432/ferryman"
REFUSED = 'connection failed: connection to server at "10.0.0.5", port 5432 failed: Connection refused'


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def refusing(times: int, reason: str = REFUSED) -> tuple[list[float], object]:
    tries: list[float] = []

    def opener() -> object:
        tries.append(clock.now)
        if len(tries) <= times:
            raise unavailable(STORE, reason)
        return "store"

    return tries, opener


clock = FakeTime()


def test_an_hour_away_is_told_about_once_a_minute_and_tried_at_most_every_30s() -> None:
    clock.now = 0.0
    lines: list[str] = []
    tries, opener = refusing(130)
    store = open_store_waiting(
        None, lambda line, *_: lines.append(line), lambda: False, None, opener,  # type: ignore[arg-type]
        clock.monotonic, clock.sleep,
    )  # fmt: skip
    assert store == "store"
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(tries)]
    assert gaps[:6] == [1, 2, 4, 8, 16, 30] and max(gaps) == 30
    minutes = tries[-1] / 60
    assert minutes - 1 <= len(lines) <= minutes + 1  # not a line per try
    assert lines[0].startswith("waiting for the store until it answers (SIGTERM or Ctrl-C to stop)")


def test_a_refusal_that_does_not_pass_is_raised_at_once_and_a_stop_ends_the_wait() -> None:
    clock.now = 0.0
    tries, opener = refusing(1, 'connection failed: FATAL: password authentication failed for user "ferry"')
    with pytest.raises(StoreUnavailable, match="refused the login"):
        open_store_waiting(None, lambda *_: None, lambda: False, None, opener, clock.monotonic, clock.sleep)  # type: ignore[arg-type]
    assert len(tries) == 1
    tries, opener = refusing(5)
    with pytest.raises(Stopped):
        open_store_waiting(None, lambda *_: None, lambda: True, None, opener, clock.monotonic, clock.sleep)  # type: ignore[arg-type]
    assert len(tries) == 1
