"""What the job service and ``ferryman worker`` ask of an engine, whichever runs the jobs.

The store queues jobs (``JobStore.enqueue``) and records every request to cancel one; an engine
claims queued jobs, runs their attempts, retries and cancels them. The local engine
(:class:`ferryman.engines.local.LocalEngine`) runs attempts on threads of this process; a
Temporal engine implements the same methods over workflows and activities. Nothing here names a
thread, a process or a container.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any, Protocol, runtime_checkable

from ferryman.jobs.states import JobType
from ferryman.store.base import Attempt, Job


class AttemptObserver(Protocol):
    """Told when an engine starts an attempt and when one ends (its outcome saved): how
    ``ferryman worker`` prints a line per job. Called on the engine's thread; must not block."""

    def started(self, job: Job, attempt: Attempt) -> None: ...

    def ended(self, job: Job, attempt: Attempt) -> None: ...

    def store_unavailable(self, reason: str, retry_in_s: float) -> None:
        """The store could not be reached; the engine tries again in ``retry_in_s``."""
        ...


class Engine(Protocol):
    """What the job service needs: wait for jobs, stop them, recover after a crash."""

    def run_jobs(self, job_ids: Collection[int], timeout_s: float | None = None) -> list[Job]:
        """Run these queued jobs (and their retries) until each is terminal; returns them.
        TimeoutError after ``timeout_s`` with the jobs still running (they go on)."""
        ...

    def submit(self, job: Job) -> None:
        """A job was just enqueued: hand it to whatever runs it (a local engine claims queued jobs
        itself; Temporal starts the job's workflow)."""
        ...

    def cancel(self, job_id: int) -> None:
        """Stop the job's running attempt now, if this engine runs it. The cancel request itself
        is the store's (``request_cancel``); this only spares the wait for the engine to see it."""
        ...

    def cancel_all(self) -> None:
        """Stop every attempt this engine runs (the process must exit)."""
        ...

    def recover(self, sweep: bool = True) -> list[Attempt]:
        """Fail (and retry, by the rules) the attempts whose engine is gone; returns them.
        ``sweep`` also removes what such engines left behind that nobody will stop."""
        ...


@runtime_checkable
class StartsHere(Protocol):
    """An engine that runs attempts in this process (the local engine): a command that runs a
    job itself queues it already started here, in one transaction (``JobStore.enqueue_running``).
    A sync/reset of a connection deleted meanwhile gets no job: NotFound."""

    def enqueue_and_start(self, type: JobType, scope: str, config: dict[str, Any]) -> Job: ...


class WorkerEngine(Engine, Protocol):
    """An engine that serves the queue until told to stop: ``ferryman worker`` (and the server)."""

    engine_id: str
    limits: dict[str, int]  # attempts at once, per slot (spec, check, discover, sync)
    observer: AttemptObserver | None

    def run(self, stop: threading.Event) -> None:
        """Claim and run jobs until ``stop`` is set, then let the running attempts finish."""
        ...

    def running_attempt_ids(self) -> list[int]: ...
