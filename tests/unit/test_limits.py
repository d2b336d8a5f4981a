"""MAX_*_WORKERS as Airbyte spells them, including the two names of the discover limit."""

from __future__ import annotations

import pytest

from ferryman.engines.limits import worker_limits


def test_defaults_are_five_each() -> None:
    assert worker_limits({}) == {"spec": 5, "check": 5, "discover": 5, "sync": 5}


def test_both_names_of_the_discover_limit_are_read() -> None:
    assert worker_limits({"MAX_DISCOVER_WORKERS": "2"})["discover"] == 2
    assert worker_limits({"MAX_DISCOVERY_WORKERS": "3", "MAX_DISCOVER_WORKERS": "2"})["discover"] == 3
    assert worker_limits({"MAX_SYNC_WORKERS": "1", "MAX_CHECK_WORKERS": "7"})["sync"] == 1


@pytest.mark.parametrize("value", ["0", "many"])
def test_a_bad_limit_is_one_clear_error(value: str) -> None:
    with pytest.raises(ValueError, match="MAX_SYNC_WORKERS"):
        worker_limits({"MAX_SYNC_WORKERS": value})
