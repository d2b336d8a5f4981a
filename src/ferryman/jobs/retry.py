"""Whether a failed attempt gets another one, and after how long (Airbyte's rules)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ferryman.errors import UserInputError
from ferryman.jobs.failures import FailureReason, FailureType
from ferryman.jobs.states import JobType


@dataclass(frozen=True)
class RetryPolicy:
    sync_max_attempts: int = 3  # SYNC_JOB_MAX_ATTEMPTS, for sync and reset
    backoff_min_s: float = 10.0
    backoff_base: float = 3.0
    backoff_max_s: float = 1800.0

    def max_attempts(self, job_type: JobType) -> int:
        return self.sync_max_attempts if job_type.is_replication else 1

    def should_retry(self, job_type: JobType, attempts_done: int, failures: list[FailureReason]) -> bool:
        """After ``attempts_done`` attempts, the last of which failed with ``failures`` (ordered)."""
        if attempts_done >= self.max_attempts(job_type):
            return False
        first = failures[0] if failures else None
        return first is None or (first.retryable and first.type is not FailureType.CONFIG_ERROR)

    def backoff_s(self, failed_attempts: int) -> float:
        """10 s, 30 s, 90 s, ... after the 1st, 2nd, 3rd failed attempt, capped at 30 min."""
        if failed_attempts < 1:
            return 0.0
        delay = self.backoff_min_s * self.backoff_base ** (failed_attempts - 1)
        return float(min(self.backoff_max_s, max(self.backoff_min_s, delay)))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RetryPolicy:
        def number(name: str, default: float, minimum: float) -> float:
            return env_number(env, name, default, minimum)

        return cls(
            sync_max_attempts=int(number("SYNC_JOB_MAX_ATTEMPTS", cls.sync_max_attempts, 1)),
            backoff_min_s=number("FERRYMAN_RETRY_BACKOFF_MIN_S", cls.backoff_min_s, 0),
            backoff_base=number("FERRYMAN_RETRY_BACKOFF_BASE", cls.backoff_base, 1),
            backoff_max_s=number("FERRYMAN_RETRY_BACKOFF_MAX_S", cls.backoff_max_s, 0),
        )


def env_number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    """A number setting from ``env``: ``default`` when unset or empty; one clear line when it is
    not a number or is below ``minimum``."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UserInputError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):  # float() takes "inf" and "nan": durations and counts overflowed
        raise UserInputError(f"{name} must be a finite number, got {raw!r}")
    if value < minimum:
        raise UserInputError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value
