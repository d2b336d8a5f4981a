"""The job service: what the CLI (and later the HTTP API) calls. Thin rules, no I/O of its own.

It validates input, snapshots everything a job needs into the job's config (so a job runs the
same whatever happens to its connection later), enqueues, and, when asked to wait, has its
engine run the job. The engine is given (:class:`ferryman.engines.base.Engine`): the CLI gives a
local engine limited to the jobs of its command; a server gives the engine it serves with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from ferryman import masking, views
from ferryman.clock import Clock
from ferryman.connectors import parse_reference, pin_reference, resolve
from ferryman.connectors.config_paths import settle_paths
from ferryman.documents import merged, refuse_deep, refuse_unstorable_text
from ferryman.engines.base import Engine, StartsHere
from ferryman.errors import EngineUnavailable, FerrymanError, FieldError, UserInputError, WorkerError
from ferryman.jobs.configs import ActorSnapshot, ConnectorJobConfig, NamespaceConfig, ReplicationConfig
from ferryman.jobs.outcomes import ConnectorOutcome
from ferryman.jobs.schedules import InvalidSchedule, Schedule, from_document
from ferryman.jobs.states import JobStatus, JobType
from ferryman.launchers import ConnectorLauncher
from ferryman.protocol.catalog import (
    NamespaceDefinition,
    NamespaceMapping,
    StreamChoice,
    check_mapping,
    plan_catalog,
    replan_catalog,
)
from ferryman.protocol.discovered import check_configured, check_discovered
from ferryman.protocol.spec_check import check_config
from ferryman.protocol.state import load_state, state_streams, state_type, without_streams
from ferryman.protocol.stream_refs import StreamRef
from ferryman.protocol.stream_refs import resolve as resolve_streams
from ferryman.protocol.sync_modes import destination_modes
from ferryman.secrets import MASK, mask_strings
from ferryman.settings import Settings
from ferryman.store.base import (
    Actor,
    AlreadyExists,
    Attempt,
    Connection,
    ConnectionBusy,
    Job,
    JobStore,
    NotFound,
    ScheduledJob,
    StaleWrite,
    StreamStat,
)
from ferryman.store.config_ops import check_new_name
from ferryman.workers.specs import connector_spec

log = logging.getLogger(__name__)

SOURCE, DESTINATION = "source", "destination"
# Compare-and-set tries of one config edit: each miss means another edit landed, so this many
# clients may edit one actor at once before one is asked to send its edit again.
CONFIG_WRITE_TRIES = 50


@dataclass(frozen=True)
class ConnectionPlan:
    """What a client asks of a new connection, besides its name and its two ends."""

    choices: list[StreamChoice] | None = None
    namespace_definition: str = "destination"
    namespace_format: str | None = None
    prefix: str = ""
    schedule: Schedule | None = None
    status: str = "active"


@dataclass(frozen=True)
class DueSync:
    """A scheduled run to make a sync job for: the connection as read (its ``next_run_at`` is
    what the scheduler saw), the due time, the job's creation time, and the next run after it."""

    connection: Connection
    due: datetime
    now: datetime
    next_run_at: datetime | None

    @property
    def seen_next_run(self) -> datetime:
        assert self.connection.next_run_at is not None
        return self.connection.next_run_at


@dataclass
class JobService:
    store: JobStore
    settings: Settings = field(default_factory=Settings.from_env)
    # Runs and stops jobs; None: a service that only queues and reads (run() refuses).
    engine: Engine | None = None
    # How the jobs the service runs for itself (the discover of a new connection) are run here;
    # the CLI's turns Ctrl-C into a cancel of the job. Default: run, and wait.
    foreground: Callable[[Job], Job] | None = None
    # What "now" is when a schedule's next run is computed; None: the store's time (see now()).
    # Tests move a ManualClock.
    clock: Clock | None = None
    # Who hears of a job queued that the engine could not take yet (the server's and the
    # scheduler's log by default; the CLI says it in its own words), and, for such a caller,
    # those jobs (id: why); see _submit.
    unsubmitted: dict[int, str] = field(default_factory=dict, init=False, repr=False)
    on_unsubmitted: Callable[[int, str], None] | None = None

    def _engine(self) -> Engine:
        if self.engine is None:
            raise WorkerError("this job service has no engine to run jobs with")
        return self.engine

    def recover_abandoned(self) -> list[Attempt]:
        """Fail the attempts whose engine is gone (see Engine.recover), so that a sync killed
        with its command does not leave its connection busy for ever; returns those attempts.

        Every command that opens the store calls this first: no `ferryman worker` is needed."""
        return [] if self.engine is None else self.engine.recover(sweep=False)

    # -- sources and destinations -----------------------------------------------------------

    def create_actor(
        self,
        kind: str,
        name: str,
        connector: str,
        config: dict[str, Any],
        resources: dict[str, str] | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> Actor:
        """Store a connector and its config, once the config fulfills the connector's spec;
        ``on_note`` hears of each relative path made absolute."""
        ref = parse_reference(connector)  # one clear line now rather than a failed job later
        check_new_name(kind, name)
        limits = {key: value for key, value in (resources or {}).items() if value}
        if limits and ref.kind != "docker":
            raise UserInputError(
                f"container limits apply to docker: connectors only, and {connector} runs as a local process"
            )
        refuse_deep(config)  # before anything walks it
        refuse_unstorable_text(config)
        config = settle_paths(ref, config, Path.cwd(), self.settings.local_root, on_note)
        connector = pin_reference(connector, self.settings.venvs)  # installs a PyPI connector now
        spec = self.fetch_spec(connector)
        check_config(spec, config, connector)  # as Airbyte's server does; no spec: not checked
        actor = self.store.create_actor(kind, name, connector, config, limits or None, spec)
        self.store.definition_for(kind, connector)  # an API client may now name it by slug
        return actor

    def update_actor(
        self,
        actor: Actor,
        name: str | None = None,
        config: dict[str, Any] | None = None,
        edit: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        patch: dict[str, Any] | None = None,
    ) -> Actor:
        """A new name and/or config: ``config`` replaces the stored one, ``edit`` makes the new
        one from it, ``patch`` is merged into it key by key (a PATCH's merge, the CLI's
        ``--merge``; into the config stored when the write lands, not the one read now). A
        secret sent back masked keeps its stored value. A name
        that cannot be taken, or a config that does not fulfill the connector's spec (checked
        with the secrets it would store), is refused before anything is written. An actor with
        no spec kept has it fetched now, and kept with the new config."""
        if name is not None and name != actor.name:
            check_new_name(actor.kind, name)
            _refuse_taken_name(actor.kind, name, partial(self.store.get_actor, actor.kind))
        if patch is not None:
            sent = patch

            def edit(stored: dict[str, Any]) -> dict[str, Any]:
                combined: dict[str, Any] = merged(stored or {}, sent)  # an object into an object
                return combined

        if config is not None or edit is not None:
            self._write_config(actor, edit or (lambda _stored: config or {}))
        if name is not None and name != actor.name:
            return self.store.rename_actor(actor.id, name)
        return self.store.get_actor_by_id(actor.kind, actor.id)

    def _write_config(self, actor: Actor, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Store the config ``edit`` makes of the stored one, compare-and-set on the one it was
        made from: when another edit landed first (two PATCHes at once), it is made again from
        the newer config, so neither edit is lost and a masked secret keeps the newest value."""
        ref = parse_reference(actor.connector)
        fetched = None if actor.spec is not None else self._spec_for_update(actor.connector)
        for _ in range(CONFIG_WRITE_TRIES):
            config = edit(actor.config)
            refuse_deep(config)  # before anything walks it
            refuse_unstorable_text(config)
            config = masking.restore_masked(config, actor)
            config = settle_paths(ref, config, Path.cwd(), self.settings.local_root)
            spec = actor.spec if actor.spec is not None else fetched
            check_config(spec, config, actor.connector)  # with the secrets it will store
            if self.store.update_actor_config(actor.id, config, expected=actor.config):
                if actor.spec is None and fetched is not None:  # kept with the config, not before
                    self.store.set_actor_spec(actor.id, actor.connector, fetched)
                return
            actor = self.store.get_actor_by_id(actor.kind, actor.id)
        raise StaleWrite(f"the configuration of {actor.kind} {actor.name!r} keeps changing; send it again")

    def fetch_spec(self, connector: str) -> dict[str, Any] | None:
        """The connector's spec, by running it if no cache has it (None when it fails); a
        reference that cannot be resolved (a package that will not install) raises."""
        resolved = resolve(parse_reference(connector), self.settings.venvs)
        return connector_spec(resolved, ConnectorLauncher(), self.settings.workspace, self.settings.lifecycle)

    def _spec_for_update(self, connector: str) -> dict[str, Any] | None:
        """The spec of an actor that has none kept (its ``spec`` failed at create, or an older
        Ferryman made it), fetched as create does; None when it still cannot be had, so the
        update goes on unchecked as before rather than fail for a connector that will not run."""
        try:
            return self.fetch_spec(connector)
        except FerrymanError:  # a package that no longer installs, an image that will not pull
            return None

    # -- read views: what a surface may show ----------------------------------------------------

    def masked_config(self, actor: Actor) -> Any:
        """The actor's config with its secret fields masked (by its kept spec: no process)."""
        return masking.masked_config(actor)

    def actor_secrets(self, *actors: Actor) -> list[str]:
        """Values to mask wherever they occur in text about these actors."""
        return masking.actor_secrets(*actors)

    def job_secrets(self, job: Job) -> list[str]:
        """Values to mask wherever they occur in text about this job (failures, logs, outputs)."""
        return masking.job_secrets(job, self.store.list_actors(SOURCE) + self.store.list_actors(DESTINATION))

    # -- connections --------------------------------------------------------------------------

    def create_connection(
        self,
        name: str,
        source: str,
        destination: str,
        streams: list[str] | None = None,
        full_refresh: bool = False,
        namespace_definition: str = "source",
        namespace_format: str | None = None,
        prefix: str = "",
        choices: list[StreamChoice] | None = None,
        on_note: Callable[[str], None] | None = None,
        schedule: Schedule | None = None,
    ) -> Connection:
        """Discover the source (as a job of its own) and configure its streams, each in its
        requested mode or the best one both sides support; ``on_note`` hears of each fallback.
        With a ``schedule``, the scheduler runs it from its next slot on."""
        NamespaceDefinition(namespace_definition)
        check_new_name("connection", name)  # before the discover job, not after it
        self.check_runs(schedule)
        if namespace_definition == "customformat" and not namespace_format:
            raise FieldError(
                "{namespace_definition} customformat needs {namespace_format}, "
                "e.g. 'raw_${SOURCE_NAMESPACE}'",
                "namespace_definition",
                "namespace_format",
            )
        src = self.store.get_actor(SOURCE, source)
        dst = self.store.get_actor(DESTINATION, destination)
        # The insert refuses it too; refused here, it spares the discover job.
        _refuse_taken_name("connection", name, self.store.get_connection)
        job = (self.foreground or self.run)(self.enqueue_discover(src))
        catalog = self.last_outcome(job).catalog
        if job.status is JobStatus.CANCELLED:
            raise WorkerError(
                f"discover of source {src.name!r} was cancelled (job {job.id}): no connection created"
            )
        if job.status is not JobStatus.SUCCEEDED or catalog is None:
            raise WorkerError(
                f"discover of source {src.name!r} failed (job {job.id}); see: ferryman jobs show {job.id}"
            )
        plan = plan_catalog(
            check_discovered(catalog), self.destination_modes(dst), streams, choices, not full_refresh
        )
        for text in plan.notes:
            (on_note or _ignore)(text)
        configured = plan.catalog
        check_mapping(configured, _mapping(namespace_definition, namespace_format, prefix))
        return self.store.create_connection(
            name,
            src.id,
            dst.id,
            configured,
            namespace_definition,
            namespace_format,
            prefix,
            schedule=None if schedule is None else schedule.to_document(),
            next_run_at=self.next_run(schedule, "active"),
        )

    def latest_catalog(self, source: Actor) -> dict[str, Any] | None:
        """The catalog of the source's newest succeeded discover, if it ran with the source's
        current connector and config (a discover of an older config may offer other streams)."""
        for job in self.store.list_jobs(scope=f"source:{source.id}", type=JobType.DISCOVER, limit=20):
            if job.config.get("connector") != source.connector or job.config.get("config") != source.config:
                continue
            if job.status is JobStatus.SUCCEEDED:
                catalog = (self.last_output(job) or {}).get("catalog")
                if catalog is not None:
                    return dict(check_discovered(catalog))
            if job.status.terminal:
                continue
            return None
        return None

    def discover_job(self, source: Actor) -> Job:
        """The source's live discover job, or a new one: clients that poll share one discover."""
        for status in (JobStatus.RUNNING, JobStatus.PENDING, JobStatus.INCOMPLETE):
            live = self.store.list_jobs(scope=f"source:{source.id}", status=status, type=JobType.DISCOVER)
            if live:
                return live[0]
        return self.enqueue_discover(source)

    def connect(
        self, name: str, source: Actor, destination: Actor, catalog: dict[str, Any], plan: ConnectionPlan
    ) -> Connection:
        """A connection from an already discovered catalog: the streams chosen (all when none is),
        each in its requested mode or, as Airbyte does, full refresh first."""
        NamespaceDefinition(plan.namespace_definition)
        self.check_runs(plan.schedule)
        configured = plan_catalog(
            catalog, self.destination_modes(destination), None, plan.choices, prefer_incremental=False
        ).catalog
        check_mapping(configured, _mapping(plan.namespace_definition, plan.namespace_format, plan.prefix))
        return self.store.create_connection(
            name,
            source.id,
            destination.id,
            configured,
            plan.namespace_definition,
            plan.namespace_format,
            plan.prefix,
            None if plan.schedule is None else plan.schedule.to_document(),
            plan.status,
            next_run_at=self.next_run(plan.schedule, plan.status),
        )

    # -- schedules ----------------------------------------------------------------------------

    def now(self) -> datetime:
        """The time schedules are planned from: the injected clock's, else the store's (one
        query), as the scheduler judges them; a server whose clock is off then neither skips
        a cron slot coming within its error nor plans a run late."""
        return self.store.now() if self.clock is None else self.clock.now()

    def next_run(self, schedule: Schedule | None, status: str) -> datetime | None:
        """When a connection with this schedule and status runs next, counted from now; None
        for a manual or inactive one."""
        if schedule is None or status != "active":
            return None
        return schedule.next_run(self.now())

    def check_runs(self, schedule: Schedule | None) -> None:
        """Refuse a schedule that would never run (a cron whose year field is past): saved, it
        would sit on the connection looking scheduled while no sync ever starts."""
        if schedule is not None and schedule.next_run(self.now()) is None:
            raise InvalidSchedule(
                f"{schedule.describe()} has no run in the coming years (is its year in the past?): "
                "give it a time still to come"
            )

    def update_connection(
        self,
        conn: Connection,
        schedule: Schedule | None = None,
        status: str | None = None,
        **values: Any,
    ) -> Connection:
        """Change a connection's fields (see ``JobStore.update_connection``). A new schedule, or
        making it active again, plans its next run from now; re-enabling one the scheduler
        disabled clears the reason and starts its failure count afresh. The schedule it has
        already, sent again (clients send the whole connection with every change), is no change:
        its next run stays where it is."""
        if status is not None and status not in ("active", "inactive"):
            raise UserInputError(f"unknown status {status!r}: expected active or inactive")
        if schedule is not None and schedule == _stored_schedule(conn):
            schedule = None
        new_status = status or conn.status
        if schedule is not None:
            self.check_runs(schedule)
            values["schedule"] = schedule.to_document()
        if status is not None and status != conn.status:
            values["status"] = status
            values["status_reason"] = None
            if status == "active":
                values["active_since"] = self.now()
        if schedule is not None or "status" in values:
            current = schedule if schedule is not None else from_document(conn.schedule)
            values["next_run_at"] = self.next_run(current, new_status)
        if not values:
            return conn
        if {"namespace_definition", "namespace_format", "prefix"} & values.keys():
            mapping = _mapping(
                values.get("namespace_definition", conn.namespace_definition),
                values.get("namespace_format", conn.namespace_format),
                values.get("prefix", conn.prefix),
            )
            check_mapping(conn.catalog, mapping)
        return self.store.update_connection(conn.id, **values)

    def update_streams(self, conn: Connection, choices: list[StreamChoice]) -> Connection:
        """The connection with new modes (or cursor, or primary key) for the streams named."""
        if not choices:
            raise FieldError("name at least one stream to change with {streams}", "streams")
        self._refuse_if_live(conn, "changing its streams")
        dst = self.store.get_actor_by_id(DESTINATION, conn.destination_id)
        catalog = replan_catalog(check_configured(conn.catalog), self.destination_modes(dst), choices)
        return self.store.update_connection_catalog(conn.id, catalog)

    def destination_modes(self, destination: Actor) -> frozenset[str]:
        """The destination sync modes its spec declares (the kept one, else fetched)."""
        return destination_modes(destination.spec or self.fetch_spec(destination.connector))

    # -- jobs -------------------------------------------------------------------------------

    def enqueue_discover(self, source: Actor) -> Job:
        config = ConnectorJobConfig.of(_snapshot(source))
        return self._submit(self.store.enqueue(JobType.DISCOVER, f"source:{source.id}", config.to_document()))

    def enqueue_check(self, actor: Actor) -> Job:
        """A check of a source's or destination's config, as a job (its output says the verdict)."""
        kind = JobType.CHECK_SOURCE if actor.kind == SOURCE else JobType.CHECK_DESTINATION
        config = ConnectorJobConfig.of(_snapshot(actor))
        return self._submit(self.store.enqueue(kind, f"{actor.kind}:{actor.id}", config.to_document()))

    def enqueue_spec(self, connector: str, scope: str) -> Job:
        """A spec of a connector reference, as a job; ``scope`` names what asked (a definition)."""
        parse_reference(connector)
        config = ConnectorJobConfig(connector=connector).to_document()
        return self._submit(self.store.enqueue(JobType.SPEC, scope, config))

    def enqueue_replication(
        self, connection: Connection | str, reset: bool = False, here: bool = False
    ) -> Job:
        """A sync (or reset) of the connection (its row, or what a user typed: resolved once);
        ConnectionBusy if one is live already. ``here``: the caller runs it in this process
        (``run``): with an engine that runs attempts here, the job is queued already started, so
        a command killed right after queueing never leaves a pending job nobody will run.
        NotFound if the connection was deleted since it was read: it gets no job.

        Its actors are read by id: a source *named* like another's id must not stand in for it."""
        conn = self.store.get_connection(connection) if isinstance(connection, str) else connection
        job_type = JobType.RESET if reset else JobType.SYNC
        config = self._replication_config(conn)
        try:
            if here and isinstance(self.engine, StartsHere):
                return self.engine.enqueue_and_start(job_type, str(conn.id), config)
            job = self.store.enqueue(job_type, str(conn.id), config, require_connection=True)
        except NotFound:  # deleted since it was read: checked where the job would be inserted
            raise NotFound(f"connection {conn.name} was deleted: no {job_type} job was queued") from None
        try:
            return self._submit(job)
        except KeyboardInterrupt:
            # Ctrl-C while Temporal is being asked to start it: the caller that would have run
            # and watched it is leaving, so it must not run later on its own (the sweep's).
            if here:
                self.store.request_cancel(job.id)
            raise

    def enqueue_scheduled(self, runs: list[DueSync]) -> list[Job | None]:
        """The sync jobs of due runs, made in one transaction (see ``JobStore.enqueue_scheduled``):
        None for a run another scheduler took or whose connection is busy."""
        actors: dict[tuple[str, int], Actor] = {}  # connections often share their actors
        planned = [
            ScheduledJob(
                connection_id=run.connection.id,
                config=self._replication_config(run.connection, actors),
                scheduled_for=run.due,
                created_at=run.now,
                seen_next_run=run.seen_next_run,
                next_run_at=run.next_run_at,
            )
            for run in runs
        ]
        queued = self.store.enqueue_scheduled(planned)
        away: str | None = None
        for job in queued:
            if job is not None and away is None:  # one wait for an engine away is enough: the
                away = self._try_submit(job)  # sweep starts the rest
        return queued

    def _replication_config(
        self, conn: Connection, actors: dict[tuple[str, int], Actor] | None = None
    ) -> dict[str, Any]:
        """The config snapshot of a sync or reset of ``conn``; ``actors``: those read already."""
        known = {} if actors is None else actors
        for kind, actor_id in ((SOURCE, conn.source_id), (DESTINATION, conn.destination_id)):
            if (kind, actor_id) not in known:
                known[kind, actor_id] = self.store.get_actor_by_id(kind, actor_id)
        config = ReplicationConfig(
            connection_id=conn.id,
            source=_snapshot(known[SOURCE, conn.source_id]),
            destination=_snapshot(known[DESTINATION, conn.destination_id]),
            catalog={},
            namespace=NamespaceConfig(
                definition=conn.namespace_definition, format=conn.namespace_format, prefix=conn.prefix
            ),
        )
        # The connection's catalog as it was read (JSON already), not copied whole by to_document:
        # megabytes for thousands of streams, and the store writes it as JSON either way.
        document = config.to_document()
        document["catalog"] = conn.catalog
        return document

    def _submit(self, job: Job) -> Job:
        """Hand a job just enqueued to the engine (Temporal starts its workflow now). An engine
        that cannot take it now leaves it queued, as it is in the store: the Temporal workers'
        sweep starts it later. That is not a failure of the call that queued it (the job exists
        and will run): the reason is logged, or, for a caller that says it itself (the CLI's
        ``on_unsubmitted``), kept in ``unsubmitted`` for it (and for :meth:`run`)."""
        reason = self._try_submit(job)
        if reason is not None and self.on_unsubmitted is not None:
            self.unsubmitted[job.id] = reason  # a command's few jobs; a server's would pile up
        return job

    def _try_submit(self, job: Job) -> str | None:
        """Submit ``job``; None when the engine took it, else why not (told as :meth:`_submit` says)."""
        if self.engine is None:
            return None
        try:
            self.engine.submit(job)
        except EngineUnavailable as exc:
            if self.on_unsubmitted is not None:
                self.on_unsubmitted(job.id, str(exc))
            else:
                log.warning("job %d is queued; %s: a worker starts it later", job.id, exc)
            return str(exc)
        return None

    def run(self, job: Job, timeout_s: float | None = None) -> Job:
        """Run a job in this process and wait for it (retries included). EngineUnavailable,
        saying the job stays queued, when the engine cannot take it."""
        reason = self.unsubmitted.get(job.id)
        try:
            if reason is None:
                return self._engine().run_jobs([job.id], timeout_s)[0]
        except EngineUnavailable as exc:
            reason = str(exc)
        status = self.store.get_job(job.id, catalog=False).status
        if status is not JobStatus.PENDING:  # started meanwhile: say so, not "queued"
            raise EngineUnavailable(
                f"job {job.id} is {status.value}, and this command cannot follow it: {reason}"
                f" (ferryman jobs show {job.id})"
            )
        raise EngineUnavailable(
            f"job {job.id} is queued, not started: {reason}; a worker starts it once it reaches"
            f" Temporal (to drop it: ferryman jobs cancel {job.id})"
        )

    def cancel(self, job_id: int) -> Job:
        """Ask for the job to stop: recorded in the store (whichever engine runs it stops it),
        and passed to this service's engine at once in case it runs the job. An engine that
        cannot be reached does not undo the request: the store's reaches the job's worker."""
        job = self.store.request_cancel(job_id)
        if self.engine is not None:
            try:
                self.engine.cancel(job_id)
            except EngineUnavailable as exc:
                if not job.status.terminal:  # a job not started is cancelled in the store outright
                    log.warning("job %d: cancel recorded; %s: its worker sees it in the store", job_id, exc)
        return job

    def stop_now(self, job_id: int) -> None:
        """Stop the job's connectors in this process without going through the store again
        (a second Ctrl-C: the store may be what is slow)."""
        if self.engine is not None:
            self.engine.cancel(job_id)

    def last_output(self, job: Job) -> dict[str, Any] | None:
        """The stored output document of the job's last attempt (see :meth:`last_outcome`)."""
        attempts = self.store.list_attempts(job.id)
        return attempts[-1].output if attempts else None

    def last_outcome(self, job: Job) -> ConnectorOutcome:
        """What the last attempt of a spec, check or discover job produced (empty if nothing)."""
        return ConnectorOutcome.from_document(self.last_output(job) or {})

    def names(self) -> views.Names:
        """Connection and actor names for labelling jobs."""
        return views.Names(
            self.store.connection_labels(),
            self.store.list_actors(SOURCE) + self.store.list_actors(DESTINATION),
        )

    def job_document(self, job_id: int, ended: Job | None = None, outputs: bool = True) -> dict[str, Any]:
        """A job with its attempts, failures and per-stream stats, every string masked by the
        job's secret values: what ``jobs show`` prints and a sync's summary is made of.
        ``ended``: the job read already as it ended (a terminal job's row no longer changes), so
        that its config, a sync's whole catalog, is not decoded a second time. Without
        ``outputs``, each attempt's ``output`` (a sync's: a state per stream) is left unread, None."""
        job, attempts = self.job_details(job_id, ended, outputs)
        document: dict[str, Any] = mask_strings(
            views.details_doc(job, self.names(), attempts), self.job_secrets(job)
        )
        return document

    def job_details(
        self, job_id: int, ended: Job | None = None, outputs: bool = True
    ) -> tuple[Job, list[tuple[Attempt, list[StreamStat]]]]:
        job = ended if ended is not None and ended.id == job_id and ended.status.terminal else None
        # Without the catalog: the document shows none, and masking reads both sides' configs only.
        job = job or self.store.get_job(job_id, catalog=False)
        attempts = self.store.list_attempts(job_id, outputs=outputs)
        return job, [(a, self.store.list_stream_stats(a.id)) for a in attempts]

    def log_path(self, job_id: int, attempt: int | None = None) -> Path:
        attempts = self.store.list_attempts(job_id, outputs=False)  # a path is all it needs
        if not attempts:
            self.store.get_job(job_id)  # NotFound for an unknown job
            raise UserInputError(f"job {job_id} has no attempt yet, so no log")
        chosen = attempts[-1] if attempt is None else next((a for a in attempts if a.number == attempt), None)
        if chosen is None:
            raise UserInputError(f"job {job_id} has no attempt {attempt}: it has 0..{len(attempts) - 1}")
        return Path(chosen.log_path)

    # -- state ------------------------------------------------------------------------------

    def _state_secrets(self, conn: Connection) -> list[str]:
        source = self.store.get_actor_by_id("source", conn.source_id)
        return masking.actor_secrets(source, self.store.get_actor_by_id("destination", conn.destination_id))

    def shown_state(
        self, conn: Connection, state: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """The state as surfaces show it: a value of the source's or destination's secrets that
        a connector copied into its state (a token it refreshes, say) masked, as the web UI and
        job outputs mask it. ``set_state`` takes this form back."""
        found = self.store.get_state(conn.id) if state is None else state
        return list(mask_strings(found, self._state_secrets(conn)))

    def set_state(self, conn: Connection, document: Any) -> list[dict[str, Any]]:
        """Replace the state; the masked state's strings sent back unchanged keep their stored
        values. Returns the state as shown. Refused while a sync or reset of the connection is
        live: its attempts read the state at their start and save over it."""
        refuse_deep(document, "the state")  # before anything walks it
        # A NUL is kept: connectors' states hold them, and both stores keep it (a json column on
        # Postgres), as for the states connectors send.
        refuse_unstorable_text(document, "the state", nul=False)
        state = load_state(document)  # a malformed state is refused before anything is checked
        self._refuse_if_live(conn, "changing its state")
        return self._edit_state(conn, partial(self._restore_masked_state, conn, state))

    def _restore_masked_state(
        self, conn: Connection, state: list[dict[str, Any]], stored: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if not stored:
            if masking.holds_mask(state):
                raise UserInputError(
                    f"the state holds {MASK} (a masked secret) but none is stored: send the value itself"
                )
            return state
        # Each STATE pairs with the stored one of its stream (or type), never by its place.
        pairs = dict(
            zip(
                map(_state_slot, stored),
                zip(stored, self.shown_state(conn, stored), strict=True),
                strict=True,
            )
        )
        matched = [pairs.get(_state_slot(item), (None, None)) for item in state]
        return [
            masking.unmask_sent_back(item, o, v, f"state {i}")
            for i, (item, (o, v)) in enumerate(zip(state, matched, strict=True))
        ]

    def clear_state(self, conn: Connection, streams: list[StreamRef] | None = None) -> list[dict[str, Any]]:
        """Forget the state, or (``streams``) only what it holds for those streams, as Airbyte
        clears a stream: a GLOBAL state keeps its shared state and the other streams'. The
        state left."""
        self._refuse_if_live(conn, "changing its state")
        if not streams:
            return self._edit_state(conn, lambda _stored: None)

        def without(state: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if any(state_type(s) == "LEGACY" for s in state):
                raise UserInputError(
                    f"the state of connection {conn.name!r} is LEGACY: it names no stream, so clear it whole"
                )
            if not state:
                raise UserInputError(
                    f"the state of connection {conn.name!r} is empty: there is nothing to clear"
                )
            holds = f"the state of connection {conn.name!r} holds"
            keys = resolve_streams(streams, state_streams(state), holds)
            return without_streams(state, {(name, namespace) for namespace, name in keys})

        return self._edit_state(conn, without)

    def _edit_state(
        self, conn: Connection, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None]
    ) -> list[dict[str, Any]]:
        """Store the state ``edit`` makes of the stored one (None: forget it), compare-and-set on
        the one it was made from, in one transaction with the check that no sync or reset of the
        connection is live (one that started after ``_refuse_if_live`` is caught there). The
        state as shown."""
        for _ in range(CONFIG_WRITE_TRIES):
            stored = self.store.get_state(conn.id)
            state = edit(stored)
            try:
                if self.store.replace_state(conn.id, state, expected=stored):
                    return self.shown_state(conn, state or [])
            except ConnectionBusy as busy:  # the words of the check before; the API's 409
                live = busy.context
                message = _live_job(conn, live["status"], live["job_id"], "changing its state")
                raise ConnectionBusy(message, job_id=live["job_id"], status=live["status"]) from None
        raise StaleWrite(f"the state of connection {conn.name!r} keeps changing; send it again")

    def _refuse_if_live(self, conn: Connection, what: str) -> None:
        for status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.INCOMPLETE):
            live = self.store.list_jobs(scope=str(conn.id), status=status, limit=1)
            if live:
                raise UserInputError(_live_job(conn, status, live[0].id, what))


def _live_job(conn: Connection, status: str, job_id: int, what: str) -> str:
    return f"connection {conn.name!r} has a {status} job ({job_id}): cancel it or let it finish before {what}"


def _state_slot(state: dict[str, Any]) -> tuple[str, str | None, str | None]:
    descriptor = (state.get("stream") or {}).get("stream_descriptor") or {}
    return state_type(state), descriptor.get("name"), descriptor.get("namespace")


def _ignore(text: str) -> None:
    pass


def _mapping(definition: str | None, namespace_format: str | None, prefix: str | None) -> NamespaceMapping:
    return NamespaceMapping(NamespaceDefinition(definition or "source"), namespace_format, prefix or "")


def _stored_schedule(conn: Connection) -> Schedule | None:
    """The connection's schedule as stored; None for one an older version stored unreadable."""
    try:
        return from_document(conn.schedule)
    except InvalidSchedule:
        return None


def _snapshot(actor: Actor) -> ActorSnapshot:
    """What a job keeps of an actor: later edits of the actor do not change a queued job. Its
    spec masks the job's log and failures."""
    return ActorSnapshot(
        connector=actor.connector,
        config=actor.config,
        actor_id=actor.id,
        resources=actor.resources or None,
        spec=actor.spec or None,
    )


def _refuse_taken_name(kind: str, name: str, find: Callable[[str], object]) -> None:
    """AlreadyExists if ``find`` (a store lookup by name) finds one of that name (checked by
    ``check_new_name`` not to read as an id)."""
    try:
        find(name)
    except NotFound:
        return
    raise AlreadyExists(f"a {kind} named {name!r} exists already")
