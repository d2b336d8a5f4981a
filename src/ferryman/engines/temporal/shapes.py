"""What the workflow and its activities pass each other: small, typed, JSON-friendly."""

from __future__ import annotations

from dataclasses import dataclass

RUN_ATTEMPT = "run_attempt"
SETTLE_ATTEMPT = "settle_attempt"
END_JOB = "end_job"


@dataclass(frozen=True)
class JobInput:
    job_id: int
    job_type: str
    # FERRYMAN_TEMPORAL_HEARTBEAT_TIMEOUT_S where the job was submitted; the default is for the
    # workflows started before the field existed.
    heartbeat_timeout_s: float = 30.0


@dataclass(frozen=True)
class RetryRules:
    """The worker's RetryPolicy, as data: the workflow decides with it, as the store did."""

    sync_max_attempts: int
    backoff_min_s: float
    backoff_base: float
    backoff_max_s: float


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended, and what the store says of the job now."""

    attempt_status: str  # succeeded | failed | cancelled | none (no attempt was started)
    job_status: str
    attempts_done: int
    failure_type: str | None
    retryable: bool
    rules: RetryRules
