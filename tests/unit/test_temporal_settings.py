"""The Temporal engine's settings from the environment: one clear line for a value it cannot use."""

from __future__ import annotations

import pytest

from ferryman.engines.temporal.settings import (
    HEARTBEAT_S,
    HEARTBEAT_TIMEOUT_S,
    RESUBMIT_AFTER_S,
    RPC_TIMEOUT_S,
    TemporalSettings,
)
from ferryman.errors import UserInputError


def test_the_activity_heartbeat_defaults_to_ten_seconds_and_takes_a_number_of_seconds() -> None:
    assert TemporalSettings.from_env({}).heartbeat_s == HEARTBEAT_S == 10.0
    assert TemporalSettings.from_env({"FERRYMAN_TEMPORAL_HEARTBEAT_S": "2.5"}).heartbeat_s == 2.5


@pytest.mark.parametrize("given", ["0", "30", "-1", "abc", "nan", "inf"])
def test_a_heartbeat_temporal_would_time_out_or_that_is_no_number_is_refused(given: str) -> None:
    with pytest.raises(UserInputError, match=r"FERRYMAN_TEMPORAL_HEARTBEAT_S=.*from 0\.1 to 20"):
        TemporalSettings.from_env({"FERRYMAN_TEMPORAL_HEARTBEAT_S": given})


def test_the_heartbeat_timeout_and_the_resubmit_delay_default_to_30_and_10_seconds() -> None:
    default = TemporalSettings.from_env({})
    assert (default.heartbeat_timeout_s, default.resubmit_after_s) == (HEARTBEAT_TIMEOUT_S, RESUBMIT_AFTER_S)
    assert (HEARTBEAT_TIMEOUT_S, RESUBMIT_AFTER_S) == (30.0, 10.0)
    given = TemporalSettings.from_env(
        {
            "FERRYMAN_TEMPORAL_HEARTBEAT_S": "2",
            "FERRYMAN_TEMPORAL_HEARTBEAT_TIMEOUT_S": "10",
            "FERRYMAN_TEMPORAL_RESUBMIT_AFTER_S": "0.5",
        }
    )
    assert (given.heartbeat_s, given.heartbeat_timeout_s, given.resubmit_after_s) == (2.0, 10.0, 0.5)


@pytest.mark.parametrize(
    ("name", "given"),
    [
        ("FERRYMAN_TEMPORAL_HEARTBEAT_TIMEOUT_S", "0.5"),
        ("FERRYMAN_TEMPORAL_HEARTBEAT_TIMEOUT_S", "soon"),
        ("FERRYMAN_TEMPORAL_RESUBMIT_AFTER_S", "-1"),
        ("FERRYMAN_TEMPORAL_RESUBMIT_AFTER_S", "nan"),
    ],
)
def test_a_timeout_or_delay_out_of_range_is_refused_in_one_line(name: str, given: str) -> None:
    with pytest.raises(UserInputError, match=rf"^{name}=.*: give seconds from "):
        TemporalSettings.from_env({name: given})


def test_a_heartbeat_timeout_no_longer_than_the_heartbeat_is_refused() -> None:
    env = {"FERRYMAN_TEMPORAL_HEARTBEAT_S": "20", "FERRYMAN_TEMPORAL_HEARTBEAT_TIMEOUT_S": "20"}
    with pytest.raises(UserInputError, match=r"HEARTBEAT_TIMEOUT_S=20 is not more than .*HEARTBEAT_S=20"):
        TemporalSettings.from_env(env)
    env["FERRYMAN_TEMPORAL_HEARTBEAT_TIMEOUT_S"] = ""  # the default 30 s is more than 20 s
    assert TemporalSettings.from_env(env).heartbeat_timeout_s == 30.0


def test_a_call_to_temporal_waits_30_seconds_by_default_and_the_bound_can_be_set() -> None:
    assert TemporalSettings.from_env({}).rpc_timeout_s == RPC_TIMEOUT_S == 30.0
    assert TemporalSettings.from_env({"FERRYMAN_TEMPORAL_RPC_TIMEOUT_S": "2"}).rpc_timeout_s == 2.0
    for given in ("0", "601", "never"):
        with pytest.raises(UserInputError, match=r"^FERRYMAN_TEMPORAL_RPC_TIMEOUT_S=.*from 1 to 600"):
            TemporalSettings.from_env({"FERRYMAN_TEMPORAL_RPC_TIMEOUT_S": given})
