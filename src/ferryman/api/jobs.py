"""Connections, streams and jobs of Airbyte's public API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from ferryman.api import models
from ferryman.api.context import (
    CANCEL_WAIT_S,
    ApiContext,
    Context,
    Limit,
    Offset,
    check_workspaces,
    not_found,
    page,
)
from ferryman.api.documents import NAMESPACES_IN, PUBLIC_JOB_TYPES, connection_doc, job_doc
from ferryman.api.models import ok
from ferryman.api.problems import Problem
from ferryman.jobs import schedules
from ferryman.jobs.states import JobStatus, JobType
from ferryman.protocol.catalog import StreamChoice
from ferryman.protocol.stream_refs import StreamRef
from ferryman.protocol.sync_modes import AIRBYTE_NAMES
from ferryman.service import ConnectionPlan
from ferryman.store.base import Actor, Connection, ConnectionBusy, Job, JobQuery, NotFound

router = APIRouter()
WorkspaceIds = Annotated[list[str] | None, Query(alias="workspaceIds")]
SyncMode = Literal[
    "full_refresh_overwrite", "full_refresh_append", "incremental_append", "incremental_deduped_history"
]


class StreamConfiguration(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    namespace: str | None = None
    syncMode: SyncMode | None = None
    cursorField: list[str] | None = None
    primaryKey: list[list[str]] | None = None


class StreamConfigurations(BaseModel):
    streams: list[StreamConfiguration] | None = None


class Schedule(BaseModel):
    """Airbyte's ``schedule``: manual, cron (a Quartz or 5-field expression, optionally followed by
    its time zone, as Airbyte echoes it: ``0 0 12 * * ? UTC``), or basic (``basicTiming``
    ``Every 2 HOURS``, or ``units`` + ``timeUnit``). ``timezone`` is ours: the cron's IANA zone."""

    scheduleType: Literal["manual", "cron", "basic"]
    cronExpression: str | None = None
    basicTiming: str | None = None
    units: int | None = None
    timeUnit: Literal["minutes", "hours", "days", "weeks", "months"] | None = None
    timezone: str | None = None


class ConnectionPatch(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = None
    configurations: StreamConfigurations | None = None
    schedule: Schedule | None = None
    namespaceDefinition: Literal["source", "destination", "custom_format"] | None = None
    namespaceFormat: str | None = None
    prefix: str | None = None
    status: Literal["active", "inactive"] | None = None


class ConnectionCreate(ConnectionPatch):
    sourceId: UUID
    destinationId: UUID


class JobCreate(BaseModel):
    connectionId: UUID
    jobType: Literal["sync", "reset", "clear", "refresh"]


def _schedule(schedule: Schedule | None) -> schedules.Schedule | None:
    if schedule is None:
        return None
    try:
        return schedules.from_document(schedule.model_dump(exclude_none=True))
    except schedules.InvalidSchedule as exc:
        raise Problem(422, f"schedule: {exc}") from None


def _choices(configurations: StreamConfigurations | None) -> list[StreamChoice] | None:
    if configurations is None or not configurations.streams:
        return None
    return [
        StreamChoice(
            _stream(s),
            AIRBYTE_NAMES[s.syncMode] if s.syncMode else None,
            s.cursorField,
            s.primaryKey,
        )
        for s in configurations.streams
    ]


def _stream(configuration: StreamConfiguration) -> StreamRef:
    """The stream of (namespace, name); without a namespace, the name alone when only one stream
    has it; with ``"namespace": null``, the one without a namespace when there is one."""
    if configuration.namespace is None and "namespace" in configuration.model_fields_set:
        return StreamRef.null_namespace(configuration.name)
    return StreamRef.named(configuration.name, configuration.namespace)


def _connection(context: ApiContext, ident: str, catalog: bool = True) -> Connection:
    """The connection of ``ident``, or a 404; without ``catalog``, its catalog (megabytes for a
    source of thousands of tables) is left unread, for routes that never look at it."""
    try:
        return context.store.get_connection_by_uuid(ident, catalog=catalog)
    except NotFound:
        raise not_found("connection", ident) from None


def _actor(context: ApiContext, kind: str, ident: UUID) -> Actor:
    try:
        return context.store.get_actor_by_uuid(kind, str(ident))
    except NotFound:
        raise not_found(kind, str(ident)) from None


def _catalog(context: ApiContext, source: Actor) -> dict[str, Any]:
    """The source's discovered catalog: the newest one that fits its config, else a discover
    job run now and waited for a bounded time (a discover may take hours; a request must not)."""
    catalog = context.service.latest_catalog(source)
    if catalog is not None:
        return catalog
    job = context.wait_for(context.service.discover_job(source), context.discover_wait_s)
    catalog = context.service.latest_catalog(source)
    if catalog is not None:
        return catalog
    if job.status.terminal:
        raise Problem(422, f"the discover of source {source.name!r} {job.status.value} (job {job.id})")
    raise Problem(
        409,
        f"the source's streams are being discovered (job {job.id}, {job.status.value}); "
        "send the same request again once it has ended",
        "try-again-later",
    )


@router.post("/connections", tags=["connections"], **ok(models.Connection))
def create_connection(body: ConnectionCreate, context: Context) -> dict[str, Any]:
    source = _actor(context, "source", body.sourceId)
    destination = _actor(context, "destination", body.destinationId)
    plan = ConnectionPlan(
        choices=_choices(body.configurations),
        namespace_definition=NAMESPACES_IN[body.namespaceDefinition or "destination"],
        namespace_format=body.namespaceFormat,
        prefix=body.prefix or "",
        schedule=_schedule(body.schedule),
        status=body.status or "active",
    )
    name = body.name or f"{source.name} → {destination.name}"
    conn = context.service.connect(name, source, destination, _catalog(context, source), plan)
    return connection_doc(conn, context.lookups())


@router.get("/connections", tags=["connections"], **ok(models.ConnectionPage))
def list_connections(
    request: Request,
    context: Context,
    workspaceIds: WorkspaceIds = None,
    includeDeleted: bool = False,
    limit: Limit = 20,
    offset: Offset = 0,
) -> dict[str, Any]:
    lookups = context.lookups()
    if not check_workspaces(context, workspaceIds):
        return page(request, [], limit, offset, lambda c: connection_doc(c, lookups))

    def fetch(count: int, start: int) -> list[Connection]:
        # Each shows its streams, so each is read whole: those of the page (and one more) only.
        return context.store.list_connections(offset=start, limit=count)

    return page(request, fetch, limit, offset, lambda c: connection_doc(c, lookups))


@router.get("/connections/{connectionId}", tags=["connections"], **ok(models.Connection))
def get_connection(connectionId: str, context: Context) -> dict[str, Any]:
    return connection_doc(_connection(context, connectionId), context.lookups())


@router.patch("/connections/{connectionId}", tags=["connections"], **ok(models.Connection))
def patch_connection(connectionId: str, body: ConnectionPatch, context: Context) -> dict[str, Any]:
    conn = _connection(context, connectionId)
    values: dict[str, Any] = {}
    for key, value in (("name", body.name), ("prefix", body.prefix)):
        if value is not None:
            values[key] = value
    if body.namespaceDefinition is not None:
        values["namespace_definition"] = NAMESPACES_IN[body.namespaceDefinition]
    if body.namespaceFormat is not None:
        values["namespace_format"] = body.namespaceFormat
    conn = context.service.update_connection(conn, _schedule(body.schedule), body.status, **values)
    choices = _choices(body.configurations)
    if choices:
        conn = context.service.update_streams(conn, choices)
    return connection_doc(conn, context.lookups())


@router.delete("/connections/{connectionId}", tags=["connections"], status_code=204, response_class=Response)
def delete_connection(connectionId: str, context: Context) -> Response:
    context.store.delete_connection(_connection(context, connectionId, catalog=False).id)
    return Response(status_code=204)


@router.get("/streams", tags=["streams"], **ok(list[models.StreamProperties]))
def stream_properties(
    context: Context, sourceId: UUID, destinationId: UUID | None = None, ignoreCache: bool = False
) -> list[dict[str, Any]]:
    catalog = _catalog(context, _actor(context, "source", sourceId))
    found = []
    for stream in catalog.get("streams", []):
        incremental = "incremental" in stream.get("supported_sync_modes", [])
        modes = [
            name for name, mode in AIRBYTE_NAMES.items() if incremental or mode.sync_mode == "full_refresh"
        ]
        entry = {
            "streamName": stream["name"],
            "syncModes": modes,
            "streamnamespace": stream.get("namespace"),
            "defaultCursorField": stream.get("default_cursor_field") or None,
            "sourceDefinedCursorField": stream.get("source_defined_cursor"),
            "sourceDefinedPrimaryKey": stream.get("source_defined_primary_key") or None,
            "propertyFields": [[key] for key in (stream.get("json_schema") or {}).get("properties", {})],
        }
        found.append({key: value for key, value in entry.items() if value is not None})
    return found


# -- jobs -------------------------------------------------------------------------------------


def _job(context: ApiContext, job_id: int) -> Job:
    try:
        job = context.store.get_job(job_id, catalog=False)  # no route here shows or runs it
    except NotFound:
        raise not_found("job", str(job_id)) from None
    if job.type not in PUBLIC_JOB_TYPES:  # spec/check/discover jobs are Ferryman's own
        raise not_found("job", str(job_id))
    return job


@router.post("/jobs", tags=["jobs"], **ok(models.Job))
def create_job(body: JobCreate, context: Context) -> dict[str, Any]:
    if body.jobType == "refresh":
        raise Problem(422, "refreshes are not supported: use jobType sync, or reset then sync")
    conn = _connection(context, str(body.connectionId))
    try:
        job = context.service.enqueue_replication(conn, reset=body.jobType != "sync")
    except ConnectionBusy as busy:
        raise busy_problem(conn, busy) from None
    return job_doc(job, context.lookups())


def busy_problem(conn: Connection, busy: ConnectionBusy) -> Problem:
    """409 as Airbyte words it: the connection has a live sync or reset."""
    live = busy.context.get("job_id")
    detail = f"A sync is already running for: {conn.uuid}" + (f" (job {live})" if live else "")
    return Problem(409, detail, "try-again-later")


@router.get("/jobs/{jobId}", tags=["jobs"], **ok(models.Job))
def get_job(jobId: int, context: Context) -> dict[str, Any]:
    return job_doc(_job(context, jobId), context.lookups())


@router.delete("/jobs/{jobId}", tags=["jobs"], **ok(models.Job))
def cancel_job(jobId: int, context: Context) -> dict[str, Any]:
    job = _job(context, jobId)
    if job.status.terminal:
        raise Problem(409, f"job {jobId} is not running: it {job.status.value}")
    job = context.wait_for(context.service.cancel(job.id), CANCEL_WAIT_S)
    return job_doc(job, context.lookups())


def parse_when(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(400, f"{name}: not a date-time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.now().astimezone().tzinfo)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # within hours of year 1 or 9999 in UTC: before or after every job
        return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


def order_clause(text: str | None) -> tuple[str, bool]:
    field, _, direction = (text or "createdAt|ASC").partition("|")
    columns = {"createdAt": "created_at", "updatedAt": "updated_at"}
    if field not in columns or direction.upper() not in ("ASC", "DESC"):
        raise Problem(
            400, f"Invalid order by clause provided: {text}; use createdAt|ASC, updatedAt|DESC, ..."
        )
    return columns[field], direction.upper() == "DESC"


@router.get("/jobs", tags=["jobs"], **ok(models.JobPage))
def list_jobs(
    request: Request,
    context: Context,
    connectionId: UUID | None = None,
    workspaceIds: WorkspaceIds = None,
    jobType: Literal["sync", "reset", "clear", "refresh"] | None = None,
    status: Literal["pending", "running", "incomplete", "failed", "succeeded", "cancelled"] | None = None,
    createdAtStart: str | None = None,
    createdAtEnd: str | None = None,
    updatedAtStart: str | None = None,
    updatedAtEnd: str | None = None,
    orderBy: str | None = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> dict[str, Any]:
    order_by, descending = order_clause(orderBy)
    scope = None if connectionId is None else str(_connection(context, str(connectionId), catalog=False).id)
    types = {None: (JobType.SYNC, JobType.RESET), "sync": (JobType.SYNC,), "refresh": ()}.get(
        jobType, (JobType.RESET,)
    )
    query = JobQuery(
        scope=scope,
        types=types,
        status=JobStatus(status) if status else None,
        created_from=parse_when(createdAtStart, "createdAtStart"),
        created_to=parse_when(createdAtEnd, "createdAtEnd"),
        updated_from=parse_when(updatedAtStart, "updatedAtStart"),
        updated_to=parse_when(updatedAtEnd, "updatedAtEnd"),
        order_by=order_by,
        descending=descending,
    )
    lookups = context.lookups()
    if not check_workspaces(context, workspaceIds) or (jobType == "refresh"):
        return page(request, [], limit, offset, lambda j: job_doc(j, lookups))

    def fetch(count: int, start: int) -> list[Job]:
        return context.store.page_jobs(JobQuery(**{**query.__dict__, "limit": count, "offset": start}))

    return page(request, fetch, limit, offset, lambda j: job_doc(j, lookups))
