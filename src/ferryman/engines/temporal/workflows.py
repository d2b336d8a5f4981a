"""The job workflow: one per job, an activity per attempt, retries after durable timers.

Deterministic: no clock, no store, no environment; everything it decides on comes back from
its activities (recorded in the workflow's history), so a worker that replays it decides the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy as ActivityRetries
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from ferryman.engines.temporal.shapes import (
        END_JOB,
        RUN_ATTEMPT,
        SETTLE_ATTEMPT,
        AttemptOutcome,
        JobInput,
    )
    from ferryman.jobs.failures import FailureOrigin, FailureReason, FailureType
    from ferryman.jobs.retry import RetryPolicy
    from ferryman.jobs.states import JobStatus, JobType

# As Airbyte: a sync may run for days; its heartbeat proves the worker alive (its timeout comes
# with the job's input: FERRYMAN_TEMPORAL_HEARTBEAT_TIMEOUT_S where it was submitted).
ATTEMPT_START_TO_CLOSE = timedelta(days=3)
BOOKKEEPING_TIMEOUT = timedelta(minutes=5)
_ONCE = ActivityRetries(maximum_attempts=1)  # an attempt is never re-run by Temporal itself
# Bookkeeping is idempotent and retried until it succeeds: a store away, or settle_attempt waiting
# for an attempt whose worker lives, asked again every 10 s at most.
_UNTIL_DONE = ActivityRetries(maximum_interval=timedelta(seconds=10))


@workflow.defn(name="FerrymanJob")
class JobWorkflow:
    @workflow.run
    async def run(self, job: JobInput) -> str:
        """Run attempts until the job is terminal in the store; returns its status."""
        try:
            return await self._attempts(job)
        except asyncio.CancelledError:
            # Cancelled while waiting out a backoff (or before the first attempt): the store's
            # job must end cancelled too. A running attempt has stopped already (we waited).
            await self._bookkeeping(END_JOB, job, True)
            raise

    async def _attempts(self, job: JobInput) -> str:
        while True:
            outcome = await self._attempt(job)
            if JobStatus(outcome.job_status).terminal or outcome.attempt_status == "none":
                return outcome.job_status
            rules = RetryPolicy(**vars(outcome.rules))
            if not rules.should_retry(JobType(job.job_type), outcome.attempts_done, _failures(outcome)):
                ended = await self._bookkeeping(END_JOB, job, False)
                return ended.job_status
            await workflow.sleep(timedelta(seconds=rules.backoff_s(outcome.attempts_done)))

    async def _attempt(self, job: JobInput) -> AttemptOutcome:
        try:
            outcome: AttemptOutcome = await workflow.execute_activity(
                RUN_ATTEMPT,
                job,
                result_type=AttemptOutcome,
                start_to_close_timeout=ATTEMPT_START_TO_CLOSE,
                heartbeat_timeout=timedelta(seconds=job.heartbeat_timeout_s),
                retry_policy=_ONCE,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
            return outcome
        except ActivityError:
            # The worker was lost (heartbeat timeout) or the activity broke: fail the attempt
            # in the store, if it still shows running, and decide from there.
            return await self._bookkeeping(SETTLE_ATTEMPT, job)

    async def _bookkeeping(self, name: str, job: JobInput, *args: bool) -> AttemptOutcome:
        outcome: AttemptOutcome = await workflow.execute_activity(
            name,
            args=[job, *args],
            result_type=AttemptOutcome,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=_UNTIL_DONE,
        )
        return outcome


def _failures(outcome: AttemptOutcome) -> list[FailureReason]:
    """Enough of the attempt's first failure for RetryPolicy.should_retry."""
    if outcome.failure_type is None:
        return []
    reason = FailureReason.of(FailureOrigin.PLATFORM, FailureType(outcome.failure_type), "", 0)
    return [dataclasses.replace(reason, retryable=outcome.retryable)]
