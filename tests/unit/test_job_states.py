"""The job state machine and the retry policy: pure rules a user relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferryman.errors import UserInputError
from ferryman.jobs.failures import FailureOrigin, FailureReason, FailureType
from ferryman.jobs.retry import RetryPolicy
from ferryman.jobs.statedoc import render
from ferryman.jobs.states import IllegalTransition, JobStatus, JobType, apply

J = JobStatus
DOC = Path(__file__).parents[2] / "docs" / "state-machine.md"


def test_the_generated_doc_is_current() -> None:
    assert DOC.read_text() == render(), "run: python -m ferryman.jobs.statedoc > docs/state-machine.md"


@pytest.mark.parametrize(
    ("current", "target"),
    [(J.PENDING, J.RUNNING), (J.RUNNING, J.INCOMPLETE), (J.INCOMPLETE, J.PENDING), (J.RUNNING, J.CANCELLED)],
)
def test_allowed_transitions(current: JobStatus, target: JobStatus) -> None:
    assert apply(current, target) is target


@pytest.mark.parametrize("terminal", [J.SUCCEEDED, J.FAILED, J.CANCELLED])
def test_a_write_to_a_terminal_job_is_a_no_op(terminal: JobStatus) -> None:
    assert apply(terminal, J.RUNNING) is None


@pytest.mark.parametrize(("current", "target"), [(J.PENDING, J.SUCCEEDED), (J.RUNNING, J.PENDING)])
def test_illegal_transitions_raise(current: JobStatus, target: JobStatus) -> None:
    with pytest.raises(IllegalTransition):
        apply(current, target)


def _failure(type_: FailureType) -> FailureReason:
    return FailureReason.of(FailureOrigin.SOURCE, type_, "x", 0)


def test_retries_follow_airbytes_rules() -> None:
    policy = RetryPolicy()
    assert policy.should_retry(JobType.SYNC, 1, [_failure(FailureType.SYSTEM_ERROR)])
    assert policy.should_retry(JobType.RESET, 2, [_failure(FailureType.HEARTBEAT_TIMEOUT)])
    assert not policy.should_retry(JobType.SYNC, 3, [_failure(FailureType.SYSTEM_ERROR)])
    assert not policy.should_retry(JobType.SYNC, 1, [_failure(FailureType.CONFIG_ERROR)])
    assert not policy.should_retry(JobType.CHECK_SOURCE, 1, [_failure(FailureType.SYSTEM_ERROR)])
    assert [policy.backoff_s(n) for n in (1, 2, 3, 4, 9)] == [10, 30, 90, 270, 1800]


def test_retry_settings_from_the_environment() -> None:
    policy = RetryPolicy.from_env({"SYNC_JOB_MAX_ATTEMPTS": "5", "FERRYMAN_RETRY_BACKOFF_MIN_S": "0.1"})
    assert policy.max_attempts(JobType.SYNC) == 5
    assert policy.backoff_s(2) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="SYNC_JOB_MAX_ATTEMPTS"):
        RetryPolicy.from_env({"SYNC_JOB_MAX_ATTEMPTS": "0"})
    for endless in ("inf", "nan"):  # float() takes them: a traceback (OverflowError) from every sync
        with pytest.raises(UserInputError, match="SYNC_JOB_MAX_ATTEMPTS must be a finite number"):
            RetryPolicy.from_env({"SYNC_JOB_MAX_ATTEMPTS": endless})


def test_slots_group_job_types_by_worker() -> None:
    assert {t: t.slot for t in JobType} == {
        JobType.SPEC: "spec",
        JobType.CHECK_SOURCE: "check",
        JobType.CHECK_DESTINATION: "check",
        JobType.DISCOVER: "discover",
        JobType.SYNC: "sync",
        JobType.RESET: "sync",
    }
