"""The part of Airbyte's config API (``/api/v1``) that dagster-airbyte and older Airflow
providers call: every route a POST with a JSON body, as Airbyte serves them.

Errors stay ``application/problem+json`` (no client parses an error body; only its status class
matters). A job's status keeps Airbyte's values, ``failed`` included; cancelling a job that has
ended answers 200 with the job as it is, since legacy dagster cancels a job it saw fail."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import NAMESPACE_URL, UUID, uuid5

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from ferryman import masking
from ferryman.api.attempts import CONFIG_TYPES, attempt_doc, masked, scope_ids, stats_doc
from ferryman.api.context import CANCEL_WAIT_S, ApiContext, Context, not_found
from ferryman.api.documents import Lookups, epoch, omit_nulls
from ferryman.api.jobs import busy_problem
from ferryman.api.models import (
    ConfigConnectionList,
    ConfigConnectionRead,
    ConfigDestinationRead,
    ConfigHealth,
    ConfigJobInfo,
    ConfigJobList,
    ConfigOperations,
    ConfigSourceRead,
    ConfigWorkspaceList,
    ConfigWorkspaceRead,
    ok,
)
from ferryman.jobs import schedules
from ferryman.jobs.states import JobStatus, JobType
from ferryman.logtail import tail_lines
from ferryman.secrets import mask_text
from ferryman.store.base import Actor, Connection, ConnectionBusy, Job, JobQuery, NotFound, UnreadConfig
from ferryman.store.rows import MAX_ID

router = APIRouter(tags=["config API"])
open_router = APIRouter(tags=["config API"])
LOG_LINES = 1000  # of each attempt's log in /jobs/get: its tail, a log may be gigabytes
TYPES_IN = {value: JobType(key) for key, value in CONFIG_TYPES.items()} | {
    "clear": JobType.RESET,
    **{t.value: t for t in JobType},
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="allow")


class ConnectionIdBody(Strict):
    connectionId: UUID


class JobIdBody(Strict):
    id: int = Field(ge=1, le=2**63 - 1)


class SourceIdBody(Strict):
    sourceId: UUID


class DestinationIdBody(Strict):
    destinationId: UUID


class WorkspaceIdBody(Strict):
    workspaceId: UUID | None = None


class Pagination(Strict):
    pageSize: Annotated[int, Field(ge=1, le=1000)] = 20
    rowOffset: Annotated[int, Field(ge=0)] = 0


class JobListBody(Strict):
    configTypes: list[str]
    configId: str | None = None
    pagination: Pagination | None = None
    statuses: list[Literal["pending", "running", "incomplete", "failed", "succeeded", "cancelled"]] | None = (
        None
    )
    orderByField: Literal["createdAt", "updatedAt"] | None = None
    orderByMethod: Literal["ASC", "DESC"] | None = None


# -- documents -----------------------------------------------------------------------------------


def workspace_read(context: ApiContext) -> dict[str, Any]:
    workspace = context.store.default_workspace()
    return {
        "workspaceId": workspace.uuid,
        "customerId": str(uuid5(NAMESPACE_URL, f"ferryman:customer:{workspace.uuid}")),
        "organizationId": str(uuid5(NAMESPACE_URL, f"ferryman:organization:{workspace.uuid}")),
        "name": workspace.name,
        "slug": workspace.name,
        "initialSetupComplete": True,
        "displaySetupWizard": False,
        "notifications": [],
    }


def _stream_read(configured: dict[str, Any]) -> dict[str, Any]:
    stream = configured["stream"]
    return {
        "stream": omit_nulls(
            {
                "name": stream["name"],
                "namespace": stream.get("namespace"),
                "jsonSchema": stream.get("json_schema") or {},
                "supportedSyncModes": stream.get("supported_sync_modes") or ["full_refresh"],
                "sourceDefinedCursor": stream.get("source_defined_cursor"),
                "defaultCursorField": stream.get("default_cursor_field") or None,
                "sourceDefinedPrimaryKey": stream.get("source_defined_primary_key") or None,
            }
        ),
        "config": omit_nulls(
            {
                "syncMode": configured["sync_mode"],
                "destinationSyncMode": configured["destination_sync_mode"],
                "cursorField": configured.get("cursor_field") or None,
                "primaryKey": configured.get("primary_key") or None,
                "aliasName": stream["name"],
                "selected": True,
            }
        ),
    }


def _schedule_data(conn: Connection) -> dict[str, Any] | None:
    """The config API's ``scheduleData``: ``basicSchedule`` {timeUnit, units} or ``cron``
    {cronExpression, cronTimeZone}; None for manual."""
    try:
        schedule = schedules.from_document(conn.schedule)
    except schedules.InvalidSchedule:
        return None
    if schedule.type is schedules.ScheduleType.BASIC and schedule.time_unit is not None:
        return {"basicSchedule": {"timeUnit": schedule.time_unit.value, "units": schedule.units}}
    if schedule.type is schedules.ScheduleType.CRON:
        return {"cron": {"cronExpression": schedule.cron, "cronTimeZone": schedule.timezone}}
    return None


def connection_read(conn: Connection, lookups: Lookups) -> dict[str, Any]:
    source = lookups.store.get_actor_by_id("source", conn.source_id)
    destination = lookups.store.get_actor_by_id("destination", conn.destination_id)
    schedule = conn.schedule or {"scheduleType": "manual"}
    return omit_nulls(
        {
            "connectionId": conn.uuid,
            "name": conn.name,
            "namespaceDefinition": conn.namespace_definition,
            "namespaceFormat": conn.namespace_format,
            "prefix": conn.prefix,
            "sourceId": source.uuid,
            "destinationId": destination.uuid,
            "workspaceId": lookups.workspace.uuid,
            "syncCatalog": {"streams": [_stream_read(s) for s in conn.catalog.get("streams", [])]},
            "status": conn.status,
            "scheduleType": schedule.get("scheduleType", "manual"),
            "scheduleData": _schedule_data(conn),
            "breakingChange": False,
            "createdAt": epoch(conn.created_at),
        }
    )


def actor_read(actor: Actor, lookups: Lookups) -> dict[str, Any]:
    definition = lookups.definition(actor)
    kind = actor.kind
    return {
        f"{kind}Id": actor.uuid,
        f"{kind}DefinitionId": definition.uuid,
        "workspaceId": lookups.workspace.uuid,
        "name": actor.name,
        f"{kind}Name": definition.slug,
        "connectionConfiguration": masking.masked_config(actor),
        "createdAt": epoch(actor.created_at),
    }


def job_read(context: ApiContext, job: Job, with_stats: list[Any] | None = None) -> dict[str, Any]:
    ids = scope_ids(context.store, job)
    document = {
        "id": job.id,
        "configType": CONFIG_TYPES.get(job.type.value, job.type.value),
        "configId": next(iter(ids.values()), job.scope or ""),
        "createdAt": epoch(job.created_at),
        "updatedAt": epoch(job.updated_at),
        "startedAt": epoch(job.started_at) if job.started_at else None,
        "status": job.status.value,
        "aggregatedStats": stats_doc(with_stats) if with_stats else None,
    }
    return omit_nulls(document)


def job_info(
    context: ApiContext, job: Job, logs: bool = True, secrets: _Secrets | None = None
) -> dict[str, Any]:
    """JobInfoRead: the job and each attempt, with the tail of its log; failures and logs masked
    by the job's secret values (``secrets``: shared by the jobs of a list)."""
    attempts = []
    every_stat = []
    secrets = secrets or _Secrets(context)
    for attempt in context.store.list_attempts(job.id, outputs=False):  # shown without them
        stats = context.store.list_stream_stats(attempt.id)
        every_stat += stats
        read = _attempt_read(attempt, stats)
        if "failureSummary" in read:  # masked once more, as GET /v1/ferryman/jobs/{id}/attempts does
            read["failureSummary"] = masked(read["failureSummary"], secrets.of(job))
        entry: dict[str, Any] = {"attempt": read}
        if logs:
            lines, _ = tail_lines(Path(attempt.log_path), LOG_LINES)
            entry["logs"] = {"logLines": [mask_text(line, secrets.of(job)) for line in lines]}
            entry["logType"] = "formatted"
        attempts.append(entry)
    return {"job": job_read(context, job, every_stat), "attempts": attempts}


class _Secrets:
    """Jobs' secret values, each job's read when first asked for, and the actors (whose kept
    specs and configs masking reads) once for all: a list's page of jobs has none of their
    configs (``page_jobs``), and only a job with a failure or a log to show needs them."""

    def __init__(self, context: ApiContext) -> None:
        self.context = context
        self.actors: list[Actor] | None = None
        self.values: dict[int, list[str]] = {}

    def of(self, job: Job) -> list[str]:
        if job.id not in self.values:
            if isinstance(job.config, UnreadConfig):
                job = self.context.store.get_job(job.id, catalog=False)  # its ends, to mask
            if self.actors is None:
                store = self.context.store
                self.actors = store.list_actors("source") + store.list_actors("destination")
            self.values[job.id] = masking.job_secrets(job, self.actors)
        return self.values[job.id]


def _attempt_read(attempt: Any, stats: list[Any]) -> dict[str, Any]:
    """AttemptRead: the attempt's number is its id (0-based), times in epoch seconds."""
    ours = attempt_doc(attempt, stats)
    return omit_nulls(
        {
            "id": attempt.number,
            "status": attempt.status.value,
            "createdAt": epoch(attempt.created_at),
            "updatedAt": epoch(attempt.updated_at),
            "endedAt": epoch(attempt.ended_at) if attempt.ended_at else None,
            "recordsSynced": ours.get("recordsSynced"),
            "bytesSynced": ours.get("bytesSynced"),
            "totalStats": ours["totalStats"],
            "streamStats": ours["streamStats"],
            "failureSummary": ours.get("failureSummary"),
        }
    )


# -- routes --------------------------------------------------------------------------------------


@open_router.get("/health", **ok(ConfigHealth))
def health() -> dict[str, Any]:
    return {"available": True}


@router.post("/workspaces/list", **ok(ConfigWorkspaceList))
def list_workspaces(context: Context) -> dict[str, Any]:
    return {"workspaces": [workspace_read(context)]}


@router.post("/workspaces/get", **ok(ConfigWorkspaceRead))
def get_workspace(body: WorkspaceIdBody, context: Context) -> dict[str, Any]:
    document = workspace_read(context)
    if body.workspaceId is not None and str(body.workspaceId) != document["workspaceId"]:
        raise not_found("workspace", str(body.workspaceId))
    return document


def _connection(context: ApiContext, ident: UUID, catalog: bool = True) -> Connection:
    """The connection of ``ident``, or a 404; without ``catalog``, its catalog is left unread."""
    try:
        return context.store.get_connection_by_uuid(str(ident), catalog=catalog)
    except NotFound:
        raise not_found("connection", str(ident)) from None


@router.post("/connections/get", **ok(ConfigConnectionRead))
def get_connection(body: ConnectionIdBody, context: Context) -> dict[str, Any]:
    return connection_read(_connection(context, body.connectionId), context.lookups())


@router.post("/connections/list", **ok(ConfigConnectionList))
def list_connections(body: WorkspaceIdBody, context: Context) -> dict[str, Any]:
    workspace = context.store.default_workspace().uuid
    if body.workspaceId is not None and str(body.workspaceId) != workspace:
        raise not_found("workspace", str(body.workspaceId))
    lookups = context.lookups()
    return {"connections": [connection_read(c, lookups) for c in context.store.list_connections()]}


def _replicate(context: ApiContext, ident: UUID, reset: bool) -> dict[str, Any]:
    conn = _connection(context, ident)
    try:
        job = context.service.enqueue_replication(conn, reset=reset)
    except ConnectionBusy as busy:
        raise busy_problem(conn, busy) from None
    return job_info(context, job, logs=False)


@router.post("/connections/sync", **ok(ConfigJobInfo))
def sync_connection(body: ConnectionIdBody, context: Context) -> dict[str, Any]:
    return _replicate(context, body.connectionId, reset=False)


@router.post("/connections/reset", **ok(ConfigJobInfo))
def reset_connection(body: ConnectionIdBody, context: Context) -> dict[str, Any]:
    return _replicate(context, body.connectionId, reset=True)


def _job(context: ApiContext, job_id: int) -> Job:
    try:
        return context.store.get_job(job_id, catalog=False)  # shown without it; masked by its ends
    except NotFound:
        raise not_found("job", str(job_id)) from None


@router.post("/jobs/get", **ok(ConfigJobInfo))
def get_job(body: JobIdBody, context: Context) -> dict[str, Any]:
    return job_info(context, _job(context, body.id))


@router.post("/jobs/cancel", **ok(ConfigJobInfo))
def cancel_job(body: JobIdBody, context: Context) -> dict[str, Any]:
    job = _job(context, body.id)
    if not job.status.terminal:
        job = context.wait_for(context.service.cancel(job.id), CANCEL_WAIT_S)
    return job_info(context, job)


def _scope(context: ApiContext, config_id: str | None) -> str | None:
    """The store's scope of a configId: a connection's, a source's or a destination's UUID."""
    if config_id is None:
        return None
    try:
        return str(context.store.get_connection_by_uuid(config_id, catalog=False).id)
    except NotFound:
        pass
    for kind in ("source", "destination"):
        try:
            return f"{kind}:{context.store.get_actor_by_uuid(kind, config_id).id}"
        except NotFound:
            continue
    return f"definition:{config_id.lower()}"


@router.post("/jobs/list", **ok(ConfigJobList))
def list_jobs(body: JobListBody, context: Context) -> dict[str, Any]:
    """Newest first by default, as Airbyte lists them; attempts are not wrapped here."""
    types = tuple(dict.fromkeys(TYPES_IN[t] for t in body.configTypes if t in TYPES_IN))
    if body.configId is not None and not _is_uuid(body.configId):
        return {"jobs": [], "totalJobCount": 0}  # it names nothing (a NUL in it would not reach Postgres)
    pagination = body.pagination or Pagination()
    if not types:
        return {"jobs": [], "totalJobCount": 0}
    query = JobQuery(
        scope=_scope(context, body.configId),
        types=types,
        statuses=tuple(JobStatus(status) for status in dict.fromkeys(body.statuses or ())),
        order_by="updated_at" if body.orderByField == "updatedAt" else "created_at",
        descending=body.orderByMethod != "ASC",
        offset=min(pagination.rowOffset, MAX_ID),
        limit=pagination.pageSize,
    )
    jobs, secrets = [], _Secrets(context)
    for job in context.store.page_jobs(query):
        info = job_info(context, job, logs=False, secrets=secrets)
        jobs.append({"job": info["job"], "attempts": [a["attempt"] for a in info["attempts"]]})
    # Counted by the database: the total once read every job it counted.
    return {"jobs": jobs, "totalJobCount": context.store.count_jobs(query)}


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


@router.post("/operations/list", **ok(ConfigOperations))
def list_operations(body: ConnectionIdBody, context: Context) -> dict[str, Any]:
    _connection(context, body.connectionId, catalog=False)
    return {"operations": []}  # Ferryman runs no normalization or webhook operations


def _actor(context: ApiContext, kind: str, ident: UUID) -> Actor:
    try:
        return context.store.get_actor_by_uuid(kind, str(ident))
    except NotFound:
        raise not_found(kind, str(ident)) from None


@router.post("/sources/get", **ok(ConfigSourceRead))
def get_source(body: SourceIdBody, context: Context) -> dict[str, Any]:
    return actor_read(_actor(context, "source", body.sourceId), context.lookups())


@router.post("/destinations/get", **ok(ConfigDestinationRead))
def get_destination(body: DestinationIdBody, context: Context) -> dict[str, Any]:
    return actor_read(_actor(context, "destination", body.destinationId), context.lookups())
