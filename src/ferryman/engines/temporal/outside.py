"""Jobs whose workflow ended outside Ferryman: terminated (``temporal workflow terminate``, the
Temporal UI), timed out (a run or execution timeout, which Ferryman never sets), or cancelled
through Temporal rather than ``ferryman jobs cancel``. Nothing would run such a job again: its
store row would stay running, pending or incomplete for ever, and its connection busy.

Two places notice it and end the job:

* the activity running the job's attempt, which Temporal tells at its next heartbeat that the
  workflow is gone: it asks how the workflow stands and, if it ended, stops the attempt's
  connectors and ends the attempt and the job with the reason from :func:`ending`;
* the workers' sweep, for pending and incomplete jobs (no attempt runs to notice): it ends a job
  whose workflow ended with one more attempt, which runs no connector and records why
  (:func:`end_unrun`).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus

from ferryman.engines.local import LocalEngine
from ferryman.jobs.failures import FailureOrigin, FailureReason, FailureType
from ferryman.jobs.outcomes import FailureSummary
from ferryman.jobs.states import AttemptStatus, JobStatus
from ferryman.store.base import Job
from ferryman.workers.attempt_log import AttemptLog

_HOW = {
    WorkflowExecutionStatus.TERMINATED: (
        "was terminated outside Ferryman (temporal workflow terminate, or the Temporal UI)"
    ),
    WorkflowExecutionStatus.TIMED_OUT: (
        "timed out (a workflow run or execution timeout set outside Ferryman, which sets none)"
    ),
    WorkflowExecutionStatus.CANCELED: (
        "was cancelled through Temporal (temporal workflow cancel, or the Temporal UI)"
    ),
    WorkflowExecutionStatus.FAILED: "failed",
    WorkflowExecutionStatus.COMPLETED: "completed without ending the job",
    WorkflowExecutionStatus.CONTINUED_AS_NEW: "was continued as new outside Ferryman",
}


def ending(
    status: WorkflowExecutionStatus | None, workflow_id: str, job_id: int
) -> tuple[FailureReason, JobStatus] | None:
    """How a job ends whose workflow has this status: None while the workflow runs, or when
    there is none (Temporal lost its data: the workers' sweep starts it again). A cancel through
    Temporal ends the job cancelled, as ``ferryman jobs cancel`` would; any other end fails it,
    without a retry (no workflow is left to run one)."""
    if status is None or status is WorkflowExecutionStatus.RUNNING:
        return None
    how = _HOW.get(status, f"ended ({status.name.lower()})")
    what = f"the Temporal workflow {workflow_id} of job {job_id} {how}"
    kept = "The connection's committed state is kept"
    if status is WorkflowExecutionStatus.CANCELED:
        message = (
            f"{what}: the job is cancelled and its connectors stopped. {kept}"
            f" (as with `ferryman jobs cancel {job_id}`)"
        )
        cancelled = FailureReason.of(
            FailureOrigin.PLATFORM, FailureType.MANUAL_CANCELLATION, message, _now_ms()
        )
        return cancelled, JobStatus.CANCELLED
    message = (
        f"{what}: nothing runs the job any more, so it failed and its connectors were stopped. {kept}:"
        f" sync again to go on from it. Stop a job with `ferryman jobs cancel {job_id}`, not through Temporal"
    )
    failure = FailureReason.of(FailureOrigin.PLATFORM, FailureType.SYSTEM_ERROR, message, _now_ms())
    return dataclasses.replace(failure, retryable=False), JobStatus.FAILED


def end_unrun(local: LocalEngine, job: Job, failure: FailureReason, job_status: JobStatus) -> Job | None:
    """End a pending or incomplete job that nothing will run: one attempt, claimed by ``local``'s
    engine and failed at once with ``failure`` (a job's failures are its attempts'), no connector
    started. None when the job is no longer pending or due (it was claimed or ended meanwhile:
    the claim is compare-and-set)."""
    store = local.store
    slots = {slot: 0 for slot in local.limits} | {job.type.slot: 1}
    # No timer will end the backoff it may be waiting out: claimed whatever its next_attempt_at.
    claimed = store.claim(
        local.engine_id, slots, local.clock.now(), local.log_path, [job.id], backoff_waited=True
    )
    if not claimed:
        return None
    job, attempt = claimed[0]
    log = AttemptLog(Path(attempt.log_path))
    log.info("platform", f"no connector runs in this attempt: {failure.message}")
    log.close()
    summary = FailureSummary(failures=[failure]).to_document()
    ended, _ = store.end_attempt(
        attempt, AttemptStatus.FAILED, job_status, local.clock.now(), failure_summary=summary
    )
    return ended


def _now_ms() -> int:
    return int(time.time() * 1000)
