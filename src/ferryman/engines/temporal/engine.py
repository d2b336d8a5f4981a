"""The client side of the Temporal engine: what the job service of the CLI and the server use.

``submit`` starts the job's workflow (id ``ferryman-job-<id>``, never reused: a job runs once);
``run_jobs`` submits and waits for the store to show the jobs ended; ``cancel`` cancels the
workflow (the store's cancel request is the service's). The Temporal client is asyncio: it lives
on a loop of its own thread, so this engine is called like the local one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from ferryman.engines.local import LocalEngine
from ferryman.engines.temporal.settings import TemporalSettings
from ferryman.engines.temporal.shapes import JobInput
from ferryman.engines.temporal.workflows import JobWorkflow
from ferryman.errors import EngineUnavailable, first_line
from ferryman.settings import Settings
from ferryman.store.base import Attempt, Job, JobStore

T = TypeVar("T")
# A describe that Temporal does not answer ends in an RPCError (DEADLINE_EXCEEDED) after this,
# which its callers take as "Temporal away", instead of waiting for ever.
_DESCRIBE_TIMEOUT = timedelta(seconds=30)


# The SDK's connect error is the Rust transport's debug text; its OS message is what a user reads.
_TRANSPORT_MESSAGE = re.compile(r'message: "([^"]{1,200})"')
# What Temporal answers when it cannot take a call now (restarting, overloaded, too slow).
_PASSING_STATUSES = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)


def where(temporal: TemporalSettings) -> str:
    return f"Temporal at {temporal.address} (namespace {temporal.namespace})"


async def connect(temporal: TemporalSettings) -> Client:
    try:
        return await Client.connect(temporal.address, namespace=temporal.namespace)
    except Exception as exc:  # the SDK raises RuntimeError with the transport's text
        found = _TRANSPORT_MESSAGE.search(str(exc))
        reason = found.group(1) if found else first_line(exc, 200)
        raise EngineUnavailable(f"cannot reach {where(temporal)}: {reason}") from None


async def start_job(client: Client, temporal: TemporalSettings, job: Job) -> bool:
    """Start the job's workflow; False when it was started before (by anyone, ever)."""
    try:
        await client.start_workflow(
            JobWorkflow.run,
            JobInput(job.id, job.type.value, temporal.heartbeat_timeout_s),
            id=temporal.workflow_id(job.id),
            task_queue=temporal.queue_of(job.type),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def workflow_status(client: Client, workflow_id: str) -> WorkflowExecutionStatus | None:
    """How the workflow of that id stands (its latest run); None when Temporal has none."""
    handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe(rpc_timeout=_DESCRIBE_TIMEOUT)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None
        raise
    return description.status


class TemporalEngine:
    """Implements :class:`ferryman.engines.base.Engine` over Temporal workflows."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings | None = None,
        temporal: TemporalSettings | None = None,
        poll_interval_s: float = 0.2,
    ) -> None:
        self.store = store
        self.temporal = temporal or TemporalSettings.from_env()
        # Recovers attempts of workers that are gone, as every command does on the local engine.
        self._recovery = LocalEngine(store, settings, foreground=True)
        self.poll_interval_s = poll_interval_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Client | None = None
        self._lock = threading.Lock()

    # -- the Engine protocol ----------------------------------------------------------------

    def submit(self, job: Job) -> None:
        self._call(lambda client: start_job(client, self.temporal, job))

    def run_jobs(self, job_ids: Collection[int], timeout_s: float | None = None) -> list[Job]:
        """Submit the jobs (again: a job is started once) and wait until the store shows each ended."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        # Submitting needs a job's id and type, and each pass its status: a sync's config holds
        # its catalog, megabytes at thousands of streams, read whole once, when it is returned.
        for job_id in job_ids:
            job = self.store.get_job(job_id, catalog=False)
            if not job.status.terminal:
                self.submit(job)
        while True:
            jobs = [self.store.get_job(job_id, catalog=False) for job_id in job_ids]
            if all(job.status.terminal for job in jobs):
                return [self.store.get_job(job_id) for job_id in job_ids]  # ended: no longer changes
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"jobs {list(job_ids)} still running after {timeout_s}s")
            time.sleep(self.poll_interval_s)

    def cancel(self, job_id: int) -> None:
        """Cancel the job's workflow: its worker stops the connectors; nothing if it has ended."""

        async def cancel(client: Client) -> None:
            handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(self.temporal.workflow_id(job_id))
            try:
                await handle.cancel()
            except RPCError as exc:
                if exc.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                    raise

        self._call(cancel)

    def cancel_all(self) -> None:
        """Nothing runs in this process."""

    def recover(self, sweep: bool = True) -> list[Attempt]:
        return self._recovery.recover(sweep)

    # -- the client's own loop --------------------------------------------------------------

    def _call(self, call: Callable[[Client], Awaitable[T]]) -> T:
        loop = self._ensure_loop()

        async def with_client() -> T:
            if self._client is None:
                self._client = await connect(self.temporal)
            return await call(self._client)

        future = asyncio.run_coroutine_threadsafe(with_client(), loop)
        try:
            return future.result(self.temporal.rpc_timeout_s)
        except concurrent.futures.TimeoutError:
            # A Temporal that takes the connection and never answers (a hung or overloaded
            # frontend, a black-holed route): the call is abandoned, not left to land later.
            future.cancel()
            raise EngineUnavailable(
                f"{where(self.temporal)} did not answer within {self.temporal.rpc_timeout_s:g} s"
                " (FERRYMAN_TEMPORAL_RPC_TIMEOUT_S)"
            ) from None
        except RPCError as exc:
            if exc.status not in _PASSING_STATUSES:
                raise
            reason = first_line(exc, 200)
            raise EngineUnavailable(f"{where(self.temporal)} cannot take calls now: {reason}") from None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="temporal-client", daemon=True).start()
                self._loop = loop
            return self._loop
