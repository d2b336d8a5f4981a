"""``ferryman worker --engine temporal``: a Temporal worker per task queue, in one process.

Each queue's worker takes at most MAX_<TYPE>_WORKERS activities at once. Attempts run on the
process's local engine (never claiming by itself), whose loop goes on here, on a thread of its
own: it heartbeats the attempts it runs in the store, passes the store's cancel requests on, and
recovers the attempts of dead engines (killing what they left on this host). The asyncio loop
serves Temporal and starts the workflow of any job left pending without one (a submit that
could not reach Temporal).

The store's loop is not a task of the asyncio loop: there it took turns with the sweep, so a
call to Temporal that did not answer (a describe had no timeout) stopped it, and a user's cancel
then waited for the attempt's next Temporal heartbeat answer (10 s), or for ever without one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy.exc import OperationalError
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from ferryman.engines.base import AttemptObserver
from ferryman.engines.local import LocalEngine
from ferryman.engines.temporal.activities import Activities
from ferryman.engines.temporal.engine import TemporalEngine, connect, start_job, workflow_status
from ferryman.engines.temporal.outside import end_unrun, ending
from ferryman.engines.temporal.settings import TemporalSettings
from ferryman.engines.temporal.workflows import JobWorkflow
from ferryman.errors import StoreUnavailable, first_line
from ferryman.jobs.states import JobStatus
from ferryman.settings import Settings
from ferryman.store.base import Attempt, Job, JobStore

log = logging.getLogger(__name__)

RESUBMIT_EVERY_S = 5.0  # at most; twice per FERRYMAN_TEMPORAL_RESUBMIT_AFTER_S when that is shorter
_ASK_TIMEOUT_S = 30.0
# The sweep asks Temporal about a job no attempt runs at most this often (per worker), and once
# more when an incomplete job becomes overdue: a workflow ended outside Ferryman ends its pending
# or waiting job within this and one sweep (docs/temporal.md).
ASK_AGAIN_AFTER_S = 60.0
_DRAIN = timedelta(days=3)  # a stopping worker lets its attempts finish (a second signal cancels)
# The sandbox still guards the workflow's calls into the standard library, but our own modules
# are imported once, not again for every workflow run: re-running workflows.py and the packages
# above it in a fresh sandbox was most of a spec job's workflow cost (measured in docs/performance.md).
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("ferryman")
)


class TemporalWorker:
    """Implements :class:`ferryman.engines.base.WorkerEngine` as Temporal workers."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings | None = None,
        temporal: TemporalSettings | None = None,
        local: LocalEngine | None = None,
        ask_again_s: float = ASK_AGAIN_AFTER_S,
    ) -> None:
        self.store = store
        self.temporal = temporal or TemporalSettings.from_env()
        self.local = local or LocalEngine(store, settings)
        self.client = TemporalEngine(store, settings, self.temporal)
        self.engine_id = self.local.engine_id
        self.limits = self.local.limits
        self.ask_again_s = ask_again_s
        self._asked: dict[int, _Asked] = {}  # by job id: what the sweep asked Temporal, and when

    @property
    def observer(self) -> AttemptObserver | None:
        return self.local.observer

    @observer.setter
    def observer(self, value: AttemptObserver | None) -> None:
        self.local.observer = value

    # -- Engine ------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        self.client.submit(job)

    def run_jobs(self, job_ids: Collection[int], timeout_s: float | None = None) -> list[Job]:
        return self.client.run_jobs(job_ids, timeout_s)

    def cancel(self, job_id: int) -> None:
        self.local.cancel(job_id)
        self.client.cancel(job_id)

    def cancel_all(self) -> None:
        self.local.cancel_all()

    def recover(self, sweep: bool = True) -> list[Attempt]:
        return self.local.recover(sweep)

    def running_attempt_ids(self) -> list[int]:
        return self.local.running_attempt_ids()

    # -- WorkerEngine ------------------------------------------------------------------------

    def reach(self) -> None:
        """Connect to Temporal once, or raise EngineUnavailable: what ``ferryman worker`` waits on
        at start-up, before it says it started (:func:`ferryman.cli.store_wait.engine_waiting`)."""
        asyncio.run(connect(self.temporal))

    def run(self, stop: threading.Event) -> None:
        """Serve every task queue until ``stop`` is set, then let the running attempts finish."""
        asyncio.run(self._serve(stop))

    async def _serve(self, stop: threading.Event) -> None:
        client = await connect(self.temporal)
        loop = asyncio.get_running_loop()

        def status_of(workflow_id: str) -> WorkflowExecutionStatus | None:  # from an activity's thread
            asking = asyncio.run_coroutine_threadsafe(workflow_status(client, workflow_id), loop)
            return asking.result(_ASK_TIMEOUT_S)

        activities = Activities(self.local, self.temporal.heartbeat_s, status_of)
        executor = ThreadPoolExecutor(max_workers=sum(self.limits.values()) + 4)
        workers = [
            Worker(
                client,
                task_queue=self.temporal.queue(slot),
                workflows=[JobWorkflow],
                workflow_runner=WORKFLOW_RUNNER,
                activities=activities.all(),
                activity_executor=executor,
                max_concurrent_activities=limit,
                graceful_shutdown_timeout=_DRAIN,
            )
            for slot, limit in self.limits.items()
        ]
        running = [asyncio.create_task(worker.run()) for worker in workers]
        drained = threading.Event()  # set once the workers stopped: the store's loop ends then
        ticking = threading.Thread(target=self._keep_ticking, args=(drained,), name="worker-store-loop")
        ticking.start()
        next_resubmit = 0.0
        try:
            while not stop.is_set() and not any(task.done() for task in running):
                if loop.time() >= next_resubmit:
                    next_resubmit = loop.time() + min(RESUBMIT_EVERY_S, self.temporal.resubmit_after_s / 2)
                    await self.sweep(client)
                await asyncio.sleep(self.local.poll_interval_s)
        finally:
            # Attempts still run while the workers drain: the store's loop heartbeats them and
            # passes cancels on until the last one ended.
            try:
                await asyncio.gather(*(worker.shutdown() for worker in workers), return_exceptions=True)
            finally:
                drained.set()
                ticking.join()  # at most one pass
                executor.shutdown(wait=False)
        for task in running:
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def _keep_ticking(self, drained: threading.Event) -> None:
        """The store's side of the attempts run here, every poll interval until ``drained``:
        the path by which a user's cancel (``cancel_requested``) reaches a running attempt
        within a poll, whatever Temporal and the asyncio loop are doing."""
        while True:
            self._tick()
            if drained.wait(self.local.poll_interval_s):
                return

    def _tick(self) -> None:
        try:
            self.local.tick(claim=False)
        except (StoreUnavailable, OperationalError) as exc:
            log.warning("store unavailable: %s", first_line(exc, limit=10_000))
        except Exception:  # the loop must go on: without it no cancel reaches an attempt here
            log.exception("the worker's pass over the store failed; trying again at the next")

    async def sweep(self, client: Client) -> None:
        """One look after the jobs no attempt runs, by how their workflow stands:
        * none: start it, for a pending job (its submit failed) or an incomplete one whose next
          attempt is overdue (the workflow sleeping out its backoff was lost with a Temporal
          server's data);
        * ended (terminated or timed out outside Ferryman): end the job (outside.py), however
          long it has waited;
        * running: leave it alone.
        A running job's own activity notices its workflow ending (Activities.run_attempt).

        Ages are judged by the store's clock, never this host's: a pending job is looked at once
        it is ``resubmit_after_s`` old (the store's time against its ``created_at``). Temporal is
        asked about a job at most every ``ask_again_s`` (60 s), and once more as an incomplete job
        becomes overdue: many jobs waiting out long backoffs cost each worker one describe per
        job a minute, not one per job every sweep (5 s)."""
        try:
            pending = await asyncio.to_thread(self.store.list_jobs, None, JobStatus.PENDING, None, 500)
            waiting = await asyncio.to_thread(self.store.list_jobs, None, JobStatus.INCOMPLETE, None, 500)
            store_now = await asyncio.to_thread(self.store.now) if pending or waiting else None
        except (StoreUnavailable, OperationalError):
            return
        listed = {job.id: job for job in pending + waiting}
        self._asked = {job_id: asked for job_id, asked in self._asked.items() if job_id in listed}
        if store_now is None:
            return
        after_s = self.temporal.resubmit_after_s  # a pending job this old has had its chance to start
        for job_id in sorted(listed):  # oldest first, in the order queued
            job = listed[job_id]
            if not self._to_ask(job, store_now):
                continue
            workflow_id = self.temporal.workflow_id(job.id)
            try:
                status = await workflow_status(client, workflow_id)
            except RPCError as exc:  # Temporal away: the next sweep looks again
                log.warning("cannot ask Temporal how workflow %s stands: %s", workflow_id, first_line(exc))
                return
            overdue = _overdue(job, store_now, after_s)
            self._asked[job.id] = _Asked(store_now, job.next_attempt_at if overdue else None)
            if status is None:
                if job.status is JobStatus.PENDING or overdue:
                    try:
                        await start_job(client, self.temporal, job)
                    except RPCError as exc:  # Temporal went away since it answered: try next sweep
                        self._asked.pop(job.id, None)
                        log.warning("cannot start workflow %s: %s", workflow_id, first_line(exc))
                        return
                continue
            ended = ending(status, workflow_id, job.id)
            if ended is not None:
                log.warning("job %s: %s", job.id, ended[0].message)
                try:
                    await asyncio.to_thread(end_unrun, self.local, job, *ended)
                except (StoreUnavailable, OperationalError):
                    return

    def _to_ask(self, job: Job, store_now: datetime) -> bool:
        """Whether this sweep asks Temporal how the job's workflow stands."""
        after_s = self.temporal.resubmit_after_s
        if job.status is JobStatus.PENDING and (store_now - job.created_at).total_seconds() < after_s:
            return False  # its submit may be starting the workflow right now
        asked = self._asked.get(job.id)
        if asked is None:
            return True
        if _overdue(job, store_now, after_s) and asked.overdue_for != job.next_attempt_at:
            return True  # its timer should have fired: a lost workflow is started without waiting
        return (store_now - asked.at).total_seconds() >= self.ask_again_s


class _Asked(NamedTuple):
    """When a worker last asked Temporal about a job's workflow."""

    at: datetime  # the store's time
    overdue_for: datetime | None  # the job's next_attempt_at, if it was overdue then


def _overdue(job: Job, store_now: datetime, after_s: float) -> bool:
    """An incomplete job whose next attempt is ``after_s`` late by the store's clock (which set
    ``next_attempt_at``): its workflow's timer is not coming (a pending job is looked at only
    once it is as old)."""
    due = job.next_attempt_at
    return due is not None and (store_now - due).total_seconds() >= after_s
