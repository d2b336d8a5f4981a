"""Lifecycle knobs from the environment: Airbyte's defaults, and one clear line for a bad value."""

from __future__ import annotations

import pytest

from ferryman.errors import UserInputError
from ferryman.settings import LifecycleSettings, Settings


def test_defaults_are_airbytes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "EXIT_GRACE_S",
        "TERM_GRACE_S",
        "CANCEL_GRACE_S",
        "SOURCE_HEARTBEAT_TIMEOUT_S",
        "DESTINATION_TIMEOUT_S",
    ):
        monkeypatch.delenv(f"FERRYMAN_{name}", raising=False)
    assert LifecycleSettings.from_env() == LifecycleSettings(60, 60, 10, 10800, 7200)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("FERRYMAN_EXIT_GRACE_S", "1.5")
    monkeypatch.setenv("FERRYMAN_DESTINATION_TIMEOUT_S", "30")
    monkeypatch.setenv("FERRYMAN_HOME", str(tmp_path))
    settings = Settings.from_env()
    assert settings.lifecycle.exit_grace_s == 1.5
    assert settings.lifecycle.destination_timeout_s == 30
    assert settings.workspace == settings.home / "workspace"


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
@pytest.mark.parametrize(
    "name", ["FERRYMAN_CANCEL_GRACE_S", "FERRYMAN_MAX_LINE_MB", "FERRYMAN_MAX_ATTEMPT_LOG_MB"]
)
def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(UserInputError, match=name):
        LifecycleSettings.from_env()


def test_a_line_limit_under_a_mebibyte_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRYMAN_MAX_LINE_MB", "0.5")
    with pytest.raises(UserInputError, match="FERRYMAN_MAX_LINE_MB must be 1 or more"):
        LifecycleSettings.from_env()


def test_the_attempt_log_limit_is_a_mebibyte_or_more_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LifecycleSettings.from_env().max_attempt_log_bytes == 256 << 20
    monkeypatch.setenv("FERRYMAN_MAX_ATTEMPT_LOG_MB", "0")  # no limit
    assert LifecycleSettings.from_env().max_attempt_log_bytes == 0
    monkeypatch.setenv("FERRYMAN_MAX_ATTEMPT_LOG_MB", "0.5")
    with pytest.raises(UserInputError, match="FERRYMAN_MAX_ATTEMPT_LOG_MB must be 1 or more"):
        LifecycleSettings.from_env()


def test_the_api_body_ceiling_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env().api_max_body_mb == 10  # Micronaut's default, as Airbyte's server
    monkeypatch.setenv("FERRYMAN_API_MAX_BODY_MB", "64")  # a catalog of tens of thousands of streams
    assert Settings.from_env().api_max_body_mb == 64
    monkeypatch.setenv("FERRYMAN_API_MAX_BODY_MB", "inf")
    with pytest.raises(UserInputError, match="FERRYMAN_API_MAX_BODY_MB must be a finite number of MiB"):
        Settings.from_env()
