"""The Temporal engine's settings from the environment: one clear line for a value it cannot use."""

from __future__ import annotations

import pytest

from ferryman.engines.temporal.settings import HEARTBEAT_S, TemporalSettings
from ferryman.errors import UserInputError


def test_the_activity_heartbeat_defaults_to_ten_seconds_and_takes_a_number_of_seconds() -> None:
    assert TemporalSettings.from_env({}).heartbeat_s == HEARTBEAT_S == 10.0
    assert TemporalSettings.from_env({"FERRYMAN_TEMPORAL_HEARTBEAT_S": "2.5"}).heartbeat_s == 2.5


@pytest.mark.parametrize("given", ["0", "30", "-1", "abc", "nan", "inf"])
def test_a_heartbeat_temporal_would_time_out_or_that_is_no_number_is_refused(given: str) -> None:
    with pytest.raises(UserInputError, match=r"FERRYMAN_TEMPORAL_HEARTBEAT_S=.*from 0\.1 to 20"):
        TemporalSettings.from_env({"FERRYMAN_TEMPORAL_HEARTBEAT_S": given})
