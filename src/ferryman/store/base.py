"""What the store keeps and the operations engines and surfaces call (issue #3).

Rows come back as frozen dataclasses; JSON columns as plain dicts and lists. Every status
change goes through :func:`ferryman.jobs.states.apply` and is written compare-and-set
(``UPDATE ... WHERE id = :id AND status = :expected``), so two engines can never both move a job.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ferryman.errors import ConnectionBusy as ConnectionBusy
from ferryman.errors import StoreError, UserInputError
from ferryman.jobs.states import AttemptStatus, JobStatus, JobType

if TYPE_CHECKING:
    from ferryman.store.tallies import Tallies


class NotFound(UserInputError):
    """No source, destination, connection or job with that id or name."""


class AlreadyExists(UserInputError):
    """A source, destination or connection with that name exists already."""


class StaleWrite(StoreError):
    """A compare-and-set found the row in another state: someone else moved it first."""


@dataclass(frozen=True)
class Actor:
    """A configured source or destination (Airbyte's actor)."""

    id: int
    kind: str  # "source" | "destination"
    name: str
    connector: str  # a connector reference: pypi:..., exec:..., builtin:...
    config: dict[str, Any]
    created_at: datetime
    # Container limits of a docker: connector (memory_limit, memory_request, cpu_limit), over the
    # JOB_MAIN_CONTAINER_* defaults; None = the defaults.
    resources: dict[str, str] | None = None
    # The connector's spec when the actor was created (or first run): what masking goes by, so
    # showing an actor never starts its connector. None = not known (names alone decide).
    spec: dict[str, Any] | None = None
    uuid: str = ""  # its id in the HTTP API


@dataclass(frozen=True)
class ConnectionLabel:
    """What names a connection and its ends, without its catalog: a source with thousands of
    streams makes a catalog megabytes of JSON, too much to read to put a name on a job."""

    id: int
    name: str
    uuid: str
    source_id: int
    destination_id: int


@dataclass(frozen=True)
class Connection:
    id: int
    name: str
    source_id: int
    destination_id: int
    catalog: dict[str, Any]  # the configured catalog, in source names
    namespace_definition: str = "source"
    namespace_format: str | None = None
    prefix: str = ""
    status: str = "active"  # "active" | "inactive"
    # {"scheduleType": "manual" | "basic" | "cron", ...}: see ferryman.jobs.schedules
    schedule: dict[str, Any] | None = None
    created_at: datetime | None = None
    uuid: str = ""  # its id in the HTTP API
    next_run_at: datetime | None = None  # when the scheduler runs it next; None: not scheduled
    status_reason: str | None = None  # why it is inactive, when the scheduler disabled it
    active_since: datetime | None = None  # re-enabled then: failures before do not count
    # Counted by the database when the catalog was left unread (see UnreadCatalog).
    counted_streams: int | None = None

    @property
    def stream_count(self) -> int:
        """How many streams the connection syncs, read or counted."""
        if self.counted_streams is not None:
            return self.counted_streams
        return len(self.catalog.get("streams", []))


class _Unread:
    """A value a list left in the store (see the subclasses): reading it raises, so that it never
    passes for an empty one."""

    _message = ""

    def _unread(self, *args: Any) -> Any:
        raise StoreError(self._message)

    __getitem__ = __iter__ = __len__ = __contains__ = __getattr__ = _unread

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class UnreadConfig(_Unread):
    """The config of a sync or reset job read for a list (:meth:`JobStore.page_jobs`): left in
    the store, where a sync of thousands of streams keeps megabytes of it. Not a dict: reading
    it raises, so that it never passes for an empty config (masking by a job's secrets reads
    them there). ``get_job`` reads the job with its config."""

    _message = "a job listed by page_jobs has no config: read it with get_job(job.id)"


class UnreadCatalog(_Unread):
    """The catalog of a connection listed without it (``list_connections(catalogs=False)``):
    megabytes of JSON for a source of thousands of streams, read for a list that shows how many
    streams there are at most (:attr:`Connection.stream_count`, counted by the database).
    Reading it raises, so that it never passes for a catalog of no streams."""

    _message = "a connection listed without its catalog has none: read it with get_connection_by_id"


class UnreadJobCatalog(_Unread):
    """The configured catalog of a sync or reset job read without it (``get_job(id,
    catalog=False)``): its source's and destination's configs (and so their secrets) are read,
    the streams are not."""

    _message = "a job read without its catalog has none: read it with get_job(job.id)"


@dataclass(frozen=True)
class Job:
    id: int
    type: JobType
    scope: str | None  # the connection id (as text) for sync/reset, else a free label
    config: dict[str, Any]  # a snapshot of everything the job needs, secrets included
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    next_attempt_at: datetime | None = None  # when an incomplete job may run again (backoff)
    cancel_requested: bool = False
    scheduled_for: datetime | None = None  # the due time the scheduler created it for


@dataclass(frozen=True)
class DueRun:
    """A connection whose scheduled run is due and that has no live job, when its last
    sync/reset job ended (None: it never had one), and whether its newest sync failed."""

    connection: Connection
    last_ended_at: datetime | None
    last_sync_failed: bool = False


@dataclass(frozen=True)
class ScheduledJob:
    """A sync job the scheduler makes for a due run, and what that run's connection expects."""

    connection_id: int
    config: dict[str, Any]  # the job's config snapshot
    scheduled_for: datetime  # the due time
    created_at: datetime
    seen_next_run: datetime  # the connection's next_run_at when the scheduler read it
    next_run_at: datetime | None  # what it becomes with the job


@dataclass(frozen=True)
class FailureStreak:
    """The failed sync jobs of a connection since its last succeeded one (and since it became
    active): how many, and when the first of them was created."""

    connection_id: int
    failures: int
    first_failed_at: datetime
    last_job_id: int


@dataclass(frozen=True)
class Attempt:
    id: int
    job_id: int
    number: int  # 0-based
    status: AttemptStatus
    log_path: str
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    output: dict[str, Any] | None = None
    failure_summary: dict[str, Any] | None = None  # {"failures": [...], "partial_success": bool|None}
    engine_id: str | None = None  # the engine process running it
    heartbeat_at: datetime | None = None
    pids: list[int] = field(default_factory=list)  # connector process groups, for crash cleanup


@dataclass(frozen=True)
class Workspace:
    uuid: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class Definition:
    """A connector that clients name by slug (``faker``) or UUID, and the reference it runs."""

    uuid: str
    kind: str  # "source" | "destination"
    slug: str
    connector: str
    builtin: bool = False


@dataclass(frozen=True)
class Application:
    """An API client: its id, and the salted hash of its secret (the secret itself is not kept)."""

    client_id: str
    name: str
    secret_hash: str
    created_at: datetime


@dataclass(frozen=True)
class Webhook:
    """Where notifications go: a URL (which may hold a token: never shown whole), a payload
    format (``slack`` or ``json``), the event kinds it wants, for one connection or (connection_id
    None) every connection of the workspace."""

    id: int
    uuid: str
    workspace_uuid: str
    connection_id: int | None
    url: str
    format: str
    events: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True)
class NotificationEvent:
    """One event for one webhook in the outbox: pending until delivered or out of tries."""

    id: int
    webhook_id: int
    kind: str  # failure | success | cancelled | disabled
    connection_id: int | None
    job_id: int | None
    detail: dict[str, Any]  # what the payloads are made of, from already-masked rows
    status: str  # pending | delivered | failed
    tries: int
    next_attempt_at: datetime
    created_at: datetime
    ended_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    claimed_by: str | None = None


@dataclass(frozen=True)
class JobTotals:
    """A job's attempts, and its streams' figures summed over them: ``records_committed`` and
    ``bytes_committed`` count what was committed (nothing where unknown), ``records`` and
    ``bytes`` what moved (committed where known, else emitted)."""

    attempts: int
    records_committed: int
    bytes_committed: int
    records: int
    bytes: int


@dataclass(frozen=True)
class StreamStat:
    attempt_id: int
    name: str
    namespace: str | None
    records_emitted: int
    bytes_emitted: int
    records_committed: int | None
    bytes_committed: int | None
    estimated_records: int | None = None
    estimated_bytes: int | None = None

    def figures(self) -> dict[str, Any]:
        """The stream and its counts without the attempt: the fields of the worker's StreamStats.
        Written out, not ``asdict``: that deep-copies each field, a second at 5,000 streams."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "records_emitted": self.records_emitted,
            "bytes_emitted": self.bytes_emitted,
            "records_committed": self.records_committed,
            "bytes_committed": self.bytes_committed,
            "estimated_records": self.estimated_records,
            "estimated_bytes": self.estimated_bytes,
        }


@dataclass(frozen=True)
class JobQuery:
    """A page of jobs: filters, order (by created_at or updated_at, then id; or by id), offset and limit."""

    scope: str | None = None
    types: tuple[JobType, ...] = ()
    status: JobStatus | None = None
    statuses: tuple[JobStatus, ...] = ()  # any of these (with ``status``: and that one)
    created_from: datetime | None = None
    created_to: datetime | None = None
    updated_from: datetime | None = None
    updated_to: datetime | None = None
    order_by: str = "created_at"
    descending: bool = False
    offset: int = 0
    limit: int = 20


class JobStore(Protocol):
    @property
    def url(self) -> str:
        """The database, password hidden: names the store (engines label their containers with it)."""
        ...

    # -- sources, destinations, connections ----------------------------------------------
    def create_actor(
        self,
        kind: str,
        name: str,
        connector: str,
        config: dict[str, Any],
        resources: dict[str, str] | None = None,
        spec: dict[str, Any] | None = None,
    ) -> Actor: ...
    def get_actor(self, kind: str, id_or_name: str) -> Actor:
        """What a user typed: a name, ``id:N``, or a bare number that is no name (then an id)."""
        ...

    def get_actor_by_id(self, kind: str, actor_id: int) -> Actor: ...
    def list_actors(self, kind: str) -> list[Actor]: ...
    def delete_actor(self, kind: str, actor_id: int) -> None: ...
    def update_actor_config(
        self, actor_id: int, config: dict[str, Any], expected: dict[str, Any] | None = None
    ) -> bool:
        """Store ``config``; given ``expected``, only if the stored config still is that (False
        when it is not: nothing written)."""
        ...

    def set_actor_spec(self, actor_id: int, connector: str, spec: dict[str, Any]) -> None:
        """Keep ``spec`` as the actor's, if the actor still runs ``connector``."""
        ...

    def create_connection(
        self,
        name: str,
        source_id: int,
        destination_id: int,
        catalog: dict[str, Any],
        namespace_definition: str = "source",
        namespace_format: str | None = None,
        prefix: str = "",
        schedule: dict[str, Any] | None = None,
        status: str = "active",
        next_run_at: datetime | None = None,
    ) -> Connection: ...
    def get_connection(self, id_or_name: str, catalog: bool = True) -> Connection:
        """What a user typed, resolved as :meth:`get_actor` does. Without ``catalog``, its
        catalog is left unread (:class:`UnreadCatalog`): for commands that never look at it."""
        ...

    def get_connection_by_id(self, connection_id: int, catalog: bool = True) -> Connection:
        """Without ``catalog``, its catalog is left unread (:class:`UnreadCatalog`)."""
        ...

    def update_connection_catalog(self, connection_id: int, catalog: dict[str, Any]) -> Connection: ...
    def list_connections(
        self, catalogs: bool = True, offset: int = 0, limit: int | None = None
    ) -> list[Connection]:
        """Connections by id, from ``offset``, at most ``limit``. Without ``catalogs``, each
        catalog is left unread (:class:`UnreadCatalog`) and its streams counted by the database
        (:attr:`Connection.stream_count`)."""
        ...

    def connection_labels(self) -> list[ConnectionLabel]: ...
    def delete_connection(self, connection_id: int) -> None: ...

    # -- jobs and attempts ----------------------------------------------------------------
    def enqueue(
        self, type: JobType, scope: str | None, config: dict[str, Any], require_connection: bool = False
    ) -> Job:
        """A pending job, its ``created_at`` the store's time (never this host's). For sync/reset:
        ConnectionBusy if the scope has a live one (the database enforces it: a partial unique
        index on scope where status is live); with ``require_connection``, NotFound if the
        connection the scope names is gone, checked in the insert's transaction (a sync asked
        for by a user: the connection may have been deleted since it was read)."""

    def enqueue_running(
        self,
        type: JobType,
        scope: str | None,
        config: dict[str, Any],
        engine_id: str,
        now: datetime,
        log_path_for: Callable[[int, int], str],
        require_connection: bool = False,
    ) -> tuple[Job, Attempt]:
        """A job and its first attempt, claimed by ``engine_id``, in one transaction: the job is
        never pending, so a process killed right after queueing it leaves a running attempt
        whose engine is gone (recovered like any other), never a pending job nobody runs.
        The job's ``created_at`` is the store's time, as for :meth:`enqueue`; ``now`` (the
        engine's clock) stamps its start and the attempt. ConnectionBusy and NotFound as for
        :meth:`enqueue`."""

    def get_job(self, job_id: int, catalog: bool = True) -> Job:
        """The job; without ``catalog``, a sync's or reset's config comes without the configured
        catalog (:class:`UnreadJobCatalog` in its place), megabytes for thousands of streams that
        what masks its secrets or shows the job never reads."""
        ...

    def list_jobs(
        self,
        scope: str | None = None,
        status: JobStatus | None = None,
        type: JobType | None = None,
        limit: int = 50,
    ) -> list[Job]: ...
    def list_attempts(self, job_id: int, outputs: bool = True) -> list[Attempt]:
        """The job's attempts, first first; without ``outputs``, each with its output unread
        (None): a sync's holds a state and a stat per stream, megabytes for thousands."""
        ...

    def claim(
        self,
        engine_id: str,
        free_slots: dict[str, int],
        now: datetime,
        log_path_for: Any,
        only: Collection[int] | None = None,
        backoff_waited: bool = False,
    ) -> list[tuple[Job, Attempt]]:
        """Atomically start runnable jobs, oldest first, at most ``free_slots[job.type.slot]``
        of each slot: pending jobs, and incomplete jobs whose ``next_attempt_at`` has passed by
        the store's clock (never ``now``, the engine's: hosts' clocks disagree). Each becomes
        running with a new running attempt (number = attempts so far) owned by ``engine_id``,
        stamped ``now``; ``log_path_for(job_id, attempt_number) -> str`` names its log.
        Postgres: FOR UPDATE SKIP LOCKED; SQLite: one BEGIN IMMEDIATE transaction.
        ``only``: consider only these job ids (the CLI running its own job in-process).
        ``backoff_waited`` (with ``only``): the caller waited out the backoff itself (a Temporal
        workflow's timer), so those jobs are taken whatever their ``next_attempt_at``."""

    def now(self) -> datetime:
        """The store's own time: what retry backoffs and heartbeats are judged by."""

    def heartbeat(self, engine_id: str, attempt_ids: list[int]) -> set[int]:
        """Renew these running attempts of ``engine_id`` at the store's time (not the engine's);
        returns those renewed (one that is missing has ended, or another engine failed it as
        stale)."""

    def set_attempt_pids(self, attempt_id: int, pids: list[int]) -> None: ...

    def set_job_config(self, job_id: int, config: dict[str, Any]) -> None:
        """What the job's later attempts run, while it is live (a no-op once it has ended): a
        connector's config update (CONTROL) goes into the job's snapshot as into its actor."""
        ...

    def end_attempt(
        self,
        attempt: Attempt,
        attempt_status: AttemptStatus,
        job_status: JobStatus,
        now: datetime,
        read_config: bool = True,
        **attempt_values: Any,
    ) -> tuple[Job, Attempt | None]:
        """An attempt's outcome, one transaction: the running attempt moved to ``attempt_status``
        (ended ``now``, with ``attempt_values``: output, failure_summary), then the job to
        ``job_status``. Returns the job and the attempt as it ended (an output it was given is
        that document, not read back); None and the job as it is when the attempt had ended
        already (an outcome reported late changes nothing).
        ``succeed_attempt``, ``fail_attempt`` and ``cancel_attempt`` are its three uses.
        Without ``read_config`` the job comes back with its config unread (:class:`UnreadConfig`),
        for a caller that holds it already: a sync's is the whole catalog."""

    def succeed_attempt(self, attempt: Attempt, output: dict[str, Any], now: datetime) -> Job:
        """Attempt succeeded, job succeeded (no-op if the job is terminal already)."""

    def fail_attempt(
        self, attempt: Attempt, output: dict[str, Any] | None, failure_summary: dict[str, Any], now: datetime
    ) -> Job:
        """Attempt failed, job incomplete."""

    def schedule_retry(self, job_id: int, backoff_s: float) -> Job:
        """An incomplete job waits ``backoff_s`` seconds for its next attempt, by the store's
        clock: ``next_attempt_at`` is the store's time plus the backoff."""

    def fail_job(self, job_id: int, now: datetime | None = None) -> Job: ...
    def fail_waiting_job(self, job_id: int, now: datetime) -> Job | None:
        """Incomplete -> failed, only if it is still incomplete (None if an engine took it)."""

    def cancel_requested(self, job_ids: Collection[int]) -> set[int]:
        """Those of these jobs whose cancel was asked for (one query for all an engine runs)."""

    def request_cancel(self, job_id: int) -> Job:
        """Pending or incomplete: cancelled at once. Running: flagged; the engine running it
        stops its connectors and calls :meth:`cancel_attempt`. Terminal: unchanged."""

    def cancel_attempt(
        self, attempt: Attempt, output: dict[str, Any] | None, failure_summary: dict[str, Any], now: datetime
    ) -> Job:
        """Attempt failed (manual_cancellation), job cancelled."""

    def stale_attempts(self, stale_after_s: float) -> list[Attempt]:
        """Running attempts whose engine has not heartbeaten for ``stale_after_s`` seconds, by
        the store's clock: a host's wrong clock never makes a live engine look dead."""

    def running_attempts(self) -> list[Attempt]:
        """Every running attempt, whoever runs it."""

    def waiting_attempts(self) -> list[Attempt]:
        """The last attempt of each incomplete sync/reset job (the one its retry follows)."""

    def save_stream_stats(self, attempt_id: int, stats: list[StreamStat]) -> None:
        """Replace the attempt's per-stream stats (upsert on attempt, name, namespace)."""

    def save_progress(
        self,
        attempt_id: int,
        stats: list[StreamStat],
        connection_id: int | None = None,
        state: list[dict[str, Any]] | None = None,
        job_id: int | None = None,
    ) -> bool:
        """A running attempt's stats and (given ``state``) its connection's committed state, in
        one transaction; False, nothing written, once the attempt has ended (failed by another
        engine, say): a late save never replaces a newer attempt's state."""

    def list_stream_stats(self, attempt_id: int) -> list[StreamStat]: ...
    def job_totals(self, job_id: int) -> JobTotals: ...

    # -- connection state -----------------------------------------------------------------
    def get_state(self, connection_id: int) -> list[dict[str, Any]]: ...
    def save_state(
        self, connection_id: int, state: list[dict[str, Any]], job_id: int | None = None
    ) -> None: ...
    def clear_state(self, connection_id: int) -> None: ...
    def replace_state(
        self, connection_id: int, state: list[dict[str, Any]] | None, expected: list[dict[str, Any]]
    ) -> bool:
        """A user's edit of the state (None: forget it), refused with ConnectionBusy while a
        sync or reset of the connection is live, compare-and-set on ``expected``; one
        transaction, which a sync or reset being enqueued meanwhile waits for."""

    # -- what the HTTP API adds (store/api_ops.py) ------------------------------------------
    def get_actor_by_uuid(self, kind: str, uuid: str) -> Actor: ...
    def rename_actor(self, actor_id: int, name: str) -> Actor: ...
    def get_connection_by_uuid(self, uuid: str, catalog: bool = True) -> Connection:
        """Without ``catalog``, its catalog is left unread (:class:`UnreadCatalog`)."""
        ...

    def update_connection(self, connection_id: int, **values: Any) -> Connection:
        """Set some of: name, status, schedule, prefix, namespace_definition, namespace_format,
        catalog, next_run_at, status_reason, active_since."""
        ...

    def engine_kind(self) -> str | None:
        """The kind of engine (local, temporal) whose workers work this store; None before any."""

    def record_engine_kind(self, kind: str, switch: bool = False) -> str:
        """Record the kind unless one is recorded (any, with ``switch``); the kind recorded now."""

    def default_workspace(self) -> Workspace: ...
    def list_definitions(self, kind: str | None = None) -> list[Definition]:
        """The built-ins, then those added, by kind and slug."""
        ...

    def add_definition(self, kind: str, slug: str, connector: str) -> Definition: ...
    def definition_for(self, kind: str, connector: str) -> Definition:
        """The definition that runs ``connector``, registered under a slug derived from it if none does."""
        ...

    def create_application(self, name: str, secret_hash: str) -> Application: ...
    def get_application(self, client_id: str) -> Application | None: ...
    def list_applications(self) -> list[Application]: ...
    def delete_application(self, client_id_or_name: str) -> Application: ...
    def page_jobs(self, query: JobQuery) -> list[Job]:
        """A page of jobs for a list: a sync's or reset's config is left unread
        (:class:`UnreadConfig`), a spec, check or discover job's is read."""
        ...

    def count_jobs(self, query: JobQuery) -> int:
        """How many jobs the query's filters match (its order, offset and limit aside)."""
        ...

    # -- notifications (store/notify_ops.py) -----------------------------------------------
    def add_webhook(
        self, url: str, format: str, events: Collection[str], connection_id: int | None = None
    ) -> Webhook: ...
    def list_webhooks(self, retired: bool = False) -> list[Webhook]:
        """The webhooks users set; ``retired`` adds those retired with their connection that still
        owe an event."""
        ...

    def get_webhook(self, ident: str) -> Webhook:
        """By UUID (or a unique prefix of it)."""
        ...

    def delete_webhook(self, ident: str) -> Webhook: ...
    def record_event(
        self,
        kind: str,
        connection_id: int,
        job_id: int | None = None,
        detail: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> int:
        """Put the event in the outbox for each webhook that wants it; how many rows it wrote."""
        ...

    def claim_events(
        self, dispatcher_id: str, lease_s: float, limit: int
    ) -> list[tuple[NotificationEvent, Webhook]]:
        """Due pending events, each claimed by one dispatcher for ``lease_s`` seconds; due and
        the lease by the store's clock, never a dispatcher's (hosts' clocks disagree)."""
        ...

    def end_event_try(
        self,
        event_id: int,
        dispatcher_id: str,
        now: datetime,
        status: str,
        retry_in_s: float | None,
        status_code: int | None,
        error: str | None,
    ) -> bool:
        """Record one delivery try of a claimed event (``now``: its end, as shown); a pending
        one is tried again ``retry_in_s`` seconds on by the store's clock. False if the claim
        was lost."""
        ...

    def list_events(self, limit: int = 50) -> list[NotificationEvent]: ...

    # -- what /metrics shows (store/tallies.py) -----------------------------------------------
    def tallies(self) -> Tallies:
        """Counts over every job, attempt and stream, read in one transaction, with the store's
        time they were read at (what the oldest pending job's age is counted to)."""
        ...

    # -- what the scheduler needs (store/schedule_ops.py) -------------------------------------
    def due_runs(self, now: datetime, limit: int, after: tuple[datetime, int] | None = None) -> list[DueRun]:
        """Active connections whose ``next_run_at`` has come and that have no live sync/reset
        job, the longest overdue first, ``limit`` of them (``after``: past this next_run_at and
        id, for the next page): one query."""
        ...

    def unplanned_connections(self) -> list[Connection]:
        """Active connections with a schedule but no ``next_run_at`` (made before the scheduler),
        their catalogs left unread (:class:`UnreadCatalog`)."""
        ...

    def planned_connections(self) -> list[Connection]:
        """Active connections with a ``next_run_at``, by id, their catalogs left unread
        (:class:`UnreadCatalog`): what the scheduler checks when its clock went back."""
        ...

    def set_next_run(self, connection_id: int, seen: datetime | None, next_run_at: datetime | None) -> bool:
        """Compare-and-set: ``next_run_at`` becomes the value given if it still is ``seen``."""
        ...

    def enqueue_scheduled(self, runs: list[ScheduledJob]) -> list[Job | None]:
        """One transaction for all: each run's sync job is created and its connection's
        ``next_run_at`` moved from ``seen_next_run`` (compare-and-set), both or neither. None
        for a run another scheduler took (``next_run_at`` moved already, or a job has this
        ``scheduled_for``: unique per scope) or whose connection has a live job."""
        ...

    def failure_streaks(self, connection_ids: Collection[int]) -> dict[int, FailureStreak]:
        """Each connection's failed sync jobs since its newest succeeded one and since it
        became active; connections without such failures are left out."""
        ...

    def disable_connection(
        self, connection_id: int, reason: str, job_id: int | None = None, now: datetime | None = None
    ) -> Connection | None:
        """Active to inactive with ``reason``, nothing scheduled; None if it was not active. The
        webhooks that listen for ``disabled`` get their event in the same transaction (``job_id``:
        the last failed job, named in the payload)."""
        ...
