"""Job and attempt states, and the one table of the transitions allowed between them.

Airbyte's table (``VALID_STATUS_CHANGES``, v0.40.32). Nothing else decides whether a status may
change: the store applies :func:`apply` and writes the result with compare-and-set.
"""

from __future__ import annotations

from enum import StrEnum

from ferryman.errors import FerrymanError


class JobType(StrEnum):
    SPEC = "spec"
    CHECK_SOURCE = "check_connection_source"
    CHECK_DESTINATION = "check_connection_destination"
    DISCOVER = "discover_schema"
    SYNC = "sync"
    RESET = "reset_connection"

    @property
    def is_replication(self) -> bool:
        return self in (JobType.SYNC, JobType.RESET)

    @property
    def slot(self) -> str:
        """The worker type that runs it, whose parallelism MAX_<SLOT>_WORKERS caps."""
        return _SLOTS[self]


_SLOTS = {
    JobType.SPEC: "spec",
    JobType.CHECK_SOURCE: "check",
    JobType.CHECK_DESTINATION: "check",
    JobType.DISCOVER: "discover",
    JobType.SYNC: "sync",
    JobType.RESET: "sync",
}


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    INCOMPLETE = "incomplete"  # the last attempt failed; another may follow
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class AttemptStatus(StrEnum):
    RUNNING = "running"
    FAILED = "failed"  # a cancelled attempt is failed, with a manual_cancellation reason
    SUCCEEDED = "succeeded"

    @property
    def terminal(self) -> bool:
        return self is not AttemptStatus.RUNNING


J = JobStatus
JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    J.PENDING: frozenset({J.RUNNING, J.FAILED, J.CANCELLED}),
    J.RUNNING: frozenset({J.INCOMPLETE, J.SUCCEEDED, J.FAILED, J.CANCELLED}),
    J.INCOMPLETE: frozenset({J.PENDING, J.RUNNING, J.INCOMPLETE, J.FAILED, J.CANCELLED}),
    J.SUCCEEDED: frozenset(),
    J.FAILED: frozenset({J.FAILED}),
    J.CANCELLED: frozenset(),
}

A = AttemptStatus
ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    A.RUNNING: frozenset({A.FAILED, A.SUCCEEDED}),
    A.FAILED: frozenset(),
    A.SUCCEEDED: frozenset(),
}


class IllegalTransition(FerrymanError):
    """A status change the table does not allow: a bug in the caller, never a race."""


def apply(current: JobStatus, target: JobStatus) -> JobStatus | None:
    """The status to write, or None when the job is terminal and the write is a no-op."""
    if current.terminal:
        return None
    if target not in JOB_TRANSITIONS[current]:
        raise IllegalTransition(f"a job cannot go from {current} to {target}", current=current, target=target)
    return target


def apply_attempt(current: AttemptStatus, target: AttemptStatus) -> AttemptStatus | None:
    if current.terminal:
        return None
    if target not in ATTEMPT_TRANSITIONS[current]:
        raise IllegalTransition(f"an attempt cannot go from {current} to {target}")
    return target
