"""The activities of the job workflow: all the I/O, against the store and the connectors.

An attempt is claimed in the store and run by the worker's local engine (AttemptExecution on a
thread: confirmed states saved coalesced, stats, masking, the store heartbeat), while the
activity heartbeats Temporal with the last committed state and passes a cancel on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import OperationalError
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from ferryman.engines.local import LocalEngine
from ferryman.engines.temporal.outside import ending
from ferryman.engines.temporal.settings import HEARTBEAT_S
from ferryman.engines.temporal.shapes import (
    END_JOB,
    RUN_ATTEMPT,
    SETTLE_ATTEMPT,
    AttemptOutcome,
    JobInput,
    RetryRules,
)
from ferryman.errors import StoreUnavailable, first_line
from ferryman.jobs.states import AttemptStatus, JobStatus
from ferryman.protocol.codec import dumps
from ferryman.store.base import Attempt, Job

_JOIN_S = 0.5  # how often the activity looks for a cancel while its attempt runs
# A heartbeat carries the state only up to this size. Temporal refuses a payload over 2 MB (its
# blob size limit; the SDK then drops every heartbeat and the activity times out as if its worker
# died) and warns past 512 KB; states of many streams or partitions reach that.
HEARTBEAT_STATE_MAX_BYTES = 256 * 1024
log = logging.getLogger(__name__)


@contextmanager
def _store_outage_in_one_line() -> Iterator[None]:
    """The store going away is expected (the activity fails, Temporal and the workflow carry
    on as they would for any failure): one line in the worker's output, not the SDK's traceback
    of every retry. Temporal logs a BENIGN application error at debug level only."""
    try:
        yield
    except (StoreUnavailable, OperationalError) as exc:
        log.warning("store unavailable in activity %s: %s", activity.info().activity_type, first_line(exc))
        raise ApplicationError(
            f"the store is unavailable: {first_line(exc)}",
            type="StoreUnavailable",
            category=ApplicationErrorCategory.BENIGN,
        ) from None


@dataclass
class Activities:
    local: LocalEngine  # the worker's engine: runs attempts, heartbeats them in the store
    heartbeat_every_s: float = HEARTBEAT_S  # FERRYMAN_TEMPORAL_HEARTBEAT_S
    # How a workflow stands, by its id (None: Temporal has none); asked on the worker's client
    # when Temporal gives up an attempt's activity. None: never asked (the attempt runs on).
    workflow_status: Callable[[str], WorkflowExecutionStatus | None] | None = None

    def all(self) -> list[Any]:
        return [self.run_attempt, self.settle_attempt, self.end_job]

    @property
    def _rules(self) -> RetryRules:
        policy = self.local.retry
        return RetryRules(
            policy.sync_max_attempts, policy.backoff_min_s, policy.backoff_base, policy.backoff_max_s
        )

    @activity.defn(name=RUN_ATTEMPT, no_thread_cancel_exception=True)
    def run_attempt(self, given: JobInput) -> AttemptOutcome:
        """Claim the job's next attempt in the store and run it to its end."""
        with _store_outage_in_one_line():
            store = self.local.store
            job = store.get_job(given.job_id)
            if job.status.terminal or job.status is JobStatus.RUNNING:
                return self._outcome(job, None)  # ended (a cancel), or run by an engine not ours
            slots = {slot: 0 for slot in self.local.limits} | {job.type.slot: 1}
            # The workflow's timer has fired: the backoff is over, whatever the store's clock
            # says (Temporal's and the store's may differ a little).
            claimed = store.claim(
                self.local.engine_id,
                slots,
                self.local.clock.now(),
                self.local.log_path,
                [job.id],
                backoff_waited=True,
            )
            if not claimed:
                return self._outcome(store.get_job(job.id), None)
            job, attempt = claimed[0]
            thread = self.local.start(job, attempt)
            # The first beat after one interval, not at once: Temporal counts the heartbeat timeout
            # from the activity's start, and a spec or check that ends sooner spares a round trip.
            next_beat = time.monotonic() + self.heartbeat_every_s
            cancel_ignored = False
            ask_at = 0.0  # when to ask Temporal (again) whether a workflow it gave up on ended
            try:
                while thread.is_alive():
                    if time.monotonic() >= next_beat:
                        next_beat = time.monotonic() + self.heartbeat_every_s
                        activity.heartbeat(self._progress(job))
                    if activity.is_cancelled() and not cancel_ignored:
                        cancel_ignored = _lost_by_temporal(job)
                        if not cancel_ignored:
                            self._cancel(job)
                    if cancel_ignored and 0.0 <= ask_at <= time.monotonic():
                        ask_at = self._stop_if_workflow_ended(job)
                    thread.join(_JOIN_S)
            finally:
                if thread.is_alive():  # something of ours broke: never leave connectors behind
                    self.local.cancel(job.id)
                    thread.join()
            return self._outcome(store.get_job(job.id), attempt.id)

    def _cancel(self, job: Job) -> None:
        """Stop the attempt as cancelled. A cancel asked of the workflow, with none asked in the
        store, came through Temporal (``temporal workflow cancel``, its UI): the reason says so."""
        details = activity.cancellation_details()
        try:
            through_temporal = bool(details and details.cancel_requested) and not (
                self.local.store.get_job(job.id).cancel_requested
            )
        except (StoreUnavailable, OperationalError):
            through_temporal = False
        ended = ending(WorkflowExecutionStatus.CANCELED, _workflow_id(), job.id)
        if through_temporal and ended is not None:
            self.local.stop(job.id, *ended)
        else:
            self.local.cancel(job.id)

    def _stop_if_workflow_ended(self, job: Job) -> float:
        """Temporal gave up the attempt's activity: if that is because its workflow ended outside
        Ferryman (terminated, timed out), stop the attempt and end the job (outside.py). Returns
        when to ask again: never (-1) once Temporal answered, a heartbeat on when it did not."""
        if self.workflow_status is None:
            return -1.0
        workflow_id = _workflow_id()
        try:
            status = self.workflow_status(workflow_id)
        except Exception as exc:  # Temporal away: the attempt runs on, and we ask again
            log.warning(
                "job %s: cannot ask Temporal how workflow %s stands: %s", job.id, workflow_id, first_line(exc)
            )
            return time.monotonic() + self.heartbeat_every_s
        ended = ending(status, workflow_id, job.id)
        if ended is not None:
            log.warning("job %s: %s", job.id, ended[0].message)
            self.local.stop(job.id, *ended)
        return -1.0

    def _progress(self, job: Job) -> dict[str, Any]:
        """What the heartbeat carries: the connection's last committed state, for the UI (saved
        first, if the sync's coalescing still held it back); only its size when it is large."""
        if not job.type.is_replication or job.scope is None:
            return {}
        self.local.save_states(job.id)
        try:
            state = self.local.store.get_state(int(job.scope))
        except (StoreUnavailable, OperationalError) as exc:
            # The heartbeat still goes (Temporal must not think this worker lost); the attempt
            # waits for the store on its own to save its state and its end.
            log.warning("heartbeat of job %s without its state: %s", job.id, first_line(exc))
            return {}
        size = len(dumps(state))
        return {"state": state} if size <= HEARTBEAT_STATE_MAX_BYTES else {"state_bytes": size}

    @activity.defn(name=SETTLE_ATTEMPT)
    def settle_attempt(self, given: JobInput) -> AttemptOutcome:
        """The attempt's activity was lost (its worker died, or Temporal lost sight of it): fail
        the attempt if the store still shows it running and its worker gone, killing what it left
        on this host, and say where the job is. A worker that lives is waited for."""
        with _store_outage_in_one_line():
            store = self.local.store
            running = [a for a in store.list_attempts(given.job_id) if a.status is AttemptStatus.RUNNING]
            for attempt in running:
                if not self.local.engine_gone(attempt):
                    raise _still_running(given.job_id, attempt)
                self.local.fail_abandoned(
                    attempt, f"the worker running this attempt ({attempt.engine_id}) was lost"
                )
            attempts = store.list_attempts(given.job_id)
            return self._outcome(store.get_job(given.job_id), attempts[-1].id if attempts else None)

    @activity.defn(name=END_JOB)
    def end_job(self, given: JobInput, cancelled: bool) -> AttemptOutcome:
        """The workflow ends the job: cancelled (its workflow was), or failed (no retry left)."""
        with _store_outage_in_one_line():
            store = self.local.store
            job = store.get_job(given.job_id)
            if not job.status.terminal:
                job = store.request_cancel(job.id) if cancelled else store.fail_job(job.id)
            return self._outcome(job, None)

    def _outcome(self, job: Job, attempt_id: int | None) -> AttemptOutcome:
        attempts = self.local.store.list_attempts(job.id)
        attempt = next((a for a in attempts if a.id == attempt_id), None)
        failure = _first_failure(attempt)
        return AttemptOutcome(
            attempt_status="none" if attempt is None else attempt.status.value,
            job_status=job.status.value,
            attempts_done=len(attempts),
            failure_type=_text(failure.get("type")) if failure else None,
            retryable=bool(failure.get("retryable", True)) if failure else True,
            rules=self._rules,
        )


def _still_running(job_id: int, attempt: Attempt) -> ApplicationError:
    """Temporal lost sight of a worker that lives (Temporal itself was away, or the worker's link
    to it): failing its attempt would start another beside it, on another host, writing to the
    same destination. Temporal retries settle_attempt until the attempt ends, or its worker's
    store heartbeat goes stale."""
    log.warning(
        "job %s: attempt %s still runs on %s, which heartbeats the store: waiting for its end",
        job_id,
        attempt.number,
        attempt.engine_id,
    )
    return ApplicationError(
        f"attempt {attempt.number} still runs on {attempt.engine_id}",
        type="AttemptStillRunning",
        category=ApplicationErrorCategory.BENIGN,
    )


def _lost_by_temporal(job: Job) -> bool:
    """Whether the activity's cancel only says that Temporal gave it up (its heartbeat timed out
    while Temporal was away, or the workflow is gone with Temporal's data), not that anyone asked:
    the attempt then runs on to its end, which the store records (the workflow's settle_attempt
    waits for it; a lost workflow's job is started again by the workers' sweep)."""
    details = activity.cancellation_details()
    if details is None or not (details.timed_out or details.not_found):
        return False
    log.warning("job %s: Temporal gave up its running attempt's activity; the attempt runs on", job.id)
    return True


def _first_failure(attempt: Attempt | None) -> dict[str, Any] | None:
    if attempt is None or not attempt.failure_summary:
        return None
    failures = attempt.failure_summary.get("failures") or []
    return dict(failures[0]) if failures else None


def _text(value: Any) -> str | None:
    return None if value is None else str(getattr(value, "value", value))


def _workflow_id() -> str:
    """The id of the workflow that scheduled this activity (every attempt's has one)."""
    return activity.info().workflow_id or ""
