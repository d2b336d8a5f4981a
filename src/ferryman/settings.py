"""Knobs read from the environment. Airbyte's names for Airbyte's knobs, ``FERRYMAN_*`` for ours."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ferryman.errors import UserInputError


def ferryman_home() -> Path:
    return Path(os.environ.get("FERRYMAN_HOME") or Path.home() / ".ferryman").expanduser()


def local_root(home: Path | None = None) -> Path:
    """The host directory connectors see as ``/local``: mounted there in Docker, and put in place
    of ``/local/...`` in the configs of connectors that run as local processes."""
    configured = os.environ.get("FERRYMAN_DOCKER_LOCAL_ROOT")
    if configured:
        return Path(configured).expanduser().absolute()
    return ((home or ferryman_home()) / "local").absolute()


def _seconds(name: str, default: float, unit: str = "seconds") -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UserInputError(f"{name} must be a number of {unit}, got {raw!r}") from None
    if not math.isfinite(value):  # float() takes "inf" and "nan"
        raise UserInputError(f"{name} must be a finite number of {unit}, got {raw!r}")
    if value < 0:
        raise UserInputError(f"{name} must not be negative, got {raw!r}")
    return value


@dataclass(frozen=True)
class LifecycleSettings:
    """Grace periods and timeouts of connector processes (Airbyte's defaults)."""

    exit_grace_s: float = 60.0
    term_grace_s: float = 60.0
    cancel_grace_s: float = 10.0
    source_heartbeat_timeout_s: float = 10800.0
    destination_timeout_s: float = 7200.0
    # How long spec, check and discover may take before they are stopped (Airbyte's activity
    # timeouts: 1 h, 5 min, 2 h), so a connector that never answers cannot hold a slot forever.
    spec_timeout_s: float = 3600.0
    check_timeout_s: float = 300.0
    discover_timeout_s: float = 7200.0
    # The longest line read from a connector's stdout (FERRYMAN_MAX_LINE_MB, MiB): one longer
    # fails the job rather than growing the worker's memory without end.
    max_line_mb: float = 256.0
    # The size of an attempt's log past which connector lines are left out, but for the last
    # ones (FERRYMAN_MAX_ATTEMPT_LOG_MB, MiB; 0: no limit), so one job cannot fill the disk.
    max_attempt_log_mb: float = 256.0

    @property
    def max_line_bytes(self) -> int:
        return int(self.max_line_mb * (1 << 20))

    @property
    def max_attempt_log_bytes(self) -> int:
        return int(self.max_attempt_log_mb * (1 << 20))

    def command_timeout_s(self, command: str) -> float:
        return {"spec": self.spec_timeout_s, "check": self.check_timeout_s}.get(
            command, self.discover_timeout_s
        )

    @staticmethod
    def command_timeout_variable(command: str) -> str:
        """The environment variable that sets ``command``'s timeout, for messages."""
        return {"spec": "FERRYMAN_SPEC_TIMEOUT_S", "check": "FERRYMAN_CHECK_TIMEOUT_S"}.get(
            command, "FERRYMAN_DISCOVER_TIMEOUT_S"
        )

    @classmethod
    def from_env(cls) -> LifecycleSettings:
        return cls(
            exit_grace_s=_seconds("FERRYMAN_EXIT_GRACE_S", cls.exit_grace_s),
            term_grace_s=_seconds("FERRYMAN_TERM_GRACE_S", cls.term_grace_s),
            cancel_grace_s=_seconds("FERRYMAN_CANCEL_GRACE_S", cls.cancel_grace_s),
            source_heartbeat_timeout_s=_seconds(
                "FERRYMAN_SOURCE_HEARTBEAT_TIMEOUT_S", cls.source_heartbeat_timeout_s
            ),
            destination_timeout_s=_seconds("FERRYMAN_DESTINATION_TIMEOUT_S", cls.destination_timeout_s),
            spec_timeout_s=_seconds("FERRYMAN_SPEC_TIMEOUT_S", cls.spec_timeout_s),
            check_timeout_s=_seconds("FERRYMAN_CHECK_TIMEOUT_S", cls.check_timeout_s),
            discover_timeout_s=_seconds("FERRYMAN_DISCOVER_TIMEOUT_S", cls.discover_timeout_s),
            max_line_mb=_max_line_mb(),
            max_attempt_log_mb=_max_attempt_log_mb(),
        )


def _max_line_mb() -> float:
    value = _seconds("FERRYMAN_MAX_LINE_MB", LifecycleSettings.max_line_mb, unit="MiB")
    if value < 1:
        raise UserInputError(f"FERRYMAN_MAX_LINE_MB must be 1 or more (MiB), got {value:g}")
    return value


def _max_attempt_log_mb() -> float:
    name = "FERRYMAN_MAX_ATTEMPT_LOG_MB"
    value = _seconds(name, LifecycleSettings.max_attempt_log_mb, unit="MiB")
    if 0 < value < 1:
        raise UserInputError(f"{name} must be 1 or more (MiB), or 0 for no limit, got {value:g}")
    return value


def _whole(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserInputError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise UserInputError(f"{name} must not be negative, got {raw!r}")
    return value


@dataclass(frozen=True)
class SchedulerSettings:
    """How often the scheduler looks for due runs, and when it disables a failing connection
    (Airbyte's defaults and names: 100 failed jobs in a row, or only failures for 14 days;
    0 turns a rule off)."""

    interval_s: float = 5.0
    max_failed_jobs: int = 100
    max_failed_days: float = 14.0
    batch: int = 500  # due runs handled per query; a pass repeats the query until none is left

    @classmethod
    def from_env(cls) -> SchedulerSettings:
        return cls(
            interval_s=_seconds("FERRYMAN_SCHEDULER_INTERVAL_S", cls.interval_s) or cls.interval_s,
            max_failed_jobs=_whole("MAX_FAILED_JOBS_IN_A_ROW_BEFORE_CONNECTION_DISABLE", cls.max_failed_jobs),
            max_failed_days=_seconds(
                "MAX_DAYS_OF_ONLY_FAILED_JOBS_BEFORE_CONNECTION_DISABLE", cls.max_failed_days, "days"
            ),
            batch=_whole("FERRYMAN_SCHEDULER_BATCH", cls.batch) or cls.batch,
        )


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=ferryman_home)
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    # Confirmed states are saved at most this often (and always when a stream's status changes
    # and when the attempt ends): a crash loses at most this much confirmed progress. 0 = each.
    state_flush_s: float = 1.0
    # The largest request body the HTTP API reads (FERRYMAN_API_MAX_BODY_MB, MiB; Micronaut's
    # default, which Airbyte's server keeps): a catalog of tens of thousands of streams needs more.
    api_max_body_mb: float = 10.0

    @property
    def workspace(self) -> Path:
        return self.home / "workspace"

    @property
    def venvs(self) -> Path:
        return self.home / "venvs"

    @property
    def local_root(self) -> Path:
        return local_root(self.home)

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            home=ferryman_home(),
            lifecycle=LifecycleSettings.from_env(),
            scheduler=SchedulerSettings.from_env(),
            state_flush_s=_seconds("FERRYMAN_STATE_FLUSH_S", cls.state_flush_s),
            api_max_body_mb=_seconds("FERRYMAN_API_MAX_BODY_MB", cls.api_max_body_mb, unit="MiB"),
        )


def native_extensions_enabled() -> bool:
    """False when ``FERRYMAN_NO_EXTENSION`` is set (not 0): use the pure-Python code paths even
    where the optional C extension was built, as a wheel without it would."""
    return os.environ.get("FERRYMAN_NO_EXTENSION", "") in ("", "0")
