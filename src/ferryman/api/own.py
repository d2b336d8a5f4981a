"""Ferryman's own routes, beside Airbyte's under ``/v1/ferryman`` (and ``/api/public/v1/ferryman``):
every job type (spec, check and discover too), a job's attempts, its log (tail, and live follow as
server-sent events), a connection's state, and spec, check and discover started as jobs.

The same rules as Airbyte's routes: problem+json errors, nulls omitted, secrets masked."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ferryman.api.attempts import SHORT_TYPES, attempt_doc, masked, scope_ids
from ferryman.api.context import ApiContext, Context, Limit, Offset, not_found, page
from ferryman.api.documents import iso, omit_nulls
from ferryman.api.jobs import order_clause, parse_when
from ferryman.api.models import (
    AttemptList,
    ConnectionState,
    DefinitionList,
    FerrymanJob,
    FerrymanJobPage,
    LogTail,
    ok,
)
from ferryman.api.problems import Problem
from ferryman.jobs.states import JobStatus, JobType
from ferryman.logtail import follow, tail_lines
from ferryman.protocol.stream_refs import StreamRef
from ferryman.secrets import mask_text
from ferryman.store.base import Actor, Attempt, Connection, Job, JobQuery, NotFound

router = APIRouter(prefix="/ferryman", tags=["ferryman"])
TYPES_IN = {
    "spec": (JobType.SPEC,),
    "check": (JobType.CHECK_SOURCE, JobType.CHECK_DESTINATION),
    "discover": (JobType.DISCOVER,),
    "sync": (JobType.SYNC,),
    "reset": (JobType.RESET,),
}
CONNECTOR_JOBS = (JobType.SPEC, JobType.CHECK_SOURCE, JobType.CHECK_DESTINATION, JobType.DISCOVER)
LIVE = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.INCOMPLETE)
MAX_TAIL = 10_000


class StateBody(BaseModel):
    state: Any  # a state document as `ferryman state set` takes it: checked by load_state


# -- documents -----------------------------------------------------------------------------------


def job_doc(context: ApiContext, job: Job, with_output: bool) -> dict[str, Any]:
    """A job of any type; with its last attempt's output (spec, check verdict, catalog) when asked."""
    shown = with_output and job.type in CONNECTOR_JOBS  # a sync's output: a state per stream, not shown
    attempts = context.store.list_attempts(job.id, outputs=shown)
    output = attempts[-1].output if attempts and shown else None
    document = omit_nulls(
        {
            "jobId": job.id,
            "jobType": SHORT_TYPES[job.type.value],
            "status": job.status.value,
            "createdAt": iso(job.created_at),
            "updatedAt": iso(job.updated_at),
            "startedAt": iso(job.started_at) if job.started_at else None,
            "cancelRequested": job.cancel_requested,
            "attempts": len(attempts),
            **scope_ids(context.store, job),
            "output": output,
        }
    )
    return masked(document, context.service.job_secrets(job)) if output else document


def _job(context: ApiContext, job_id: int) -> Job:
    try:
        return context.store.get_job(job_id, catalog=False)  # shown without it; masked by its ends
    except NotFound:
        raise not_found("job", str(job_id)) from None


def _actor(context: ApiContext, kind: str, ident: UUID) -> Actor:
    try:
        return context.store.get_actor_by_uuid(kind, str(ident))
    except NotFound:
        raise not_found(kind, str(ident)) from None


def _connection(context: ApiContext, ident: UUID) -> Connection:
    """The connection of ``ident``, or a 404. Its catalog is left unread: no route here looks at
    it, and it is megabytes for a source of thousands of tables."""
    try:
        return context.store.get_connection_by_uuid(str(ident), catalog=False)
    except NotFound:
        raise not_found("connection", str(ident)) from None


# -- jobs of every type --------------------------------------------------------------------------


@router.get("/jobs", **ok(FerrymanJobPage))
def list_jobs(
    request: Request,
    context: Context,
    jobType: Literal["spec", "check", "discover", "sync", "reset"] | None = None,
    connectionId: UUID | None = None,
    sourceId: UUID | None = None,
    destinationId: UUID | None = None,
    definitionId: UUID | None = None,
    status: Literal["pending", "running", "incomplete", "failed", "succeeded", "cancelled"] | None = None,
    createdAtStart: str | None = None,
    createdAtEnd: str | None = None,
    orderBy: str = "createdAt|DESC",
    limit: Limit = 20,
    offset: Offset = 0,
) -> dict[str, Any]:
    """The job history, newest first by default: with jobType spec, check or discover, the jobs
    the public API's /jobs does not list."""
    order_by, descending = order_clause(orderBy)
    scopes = [
        str(_connection(context, connectionId).id) if connectionId else None,
        f"source:{_actor(context, 'source', sourceId).id}" if sourceId else None,
        f"destination:{_actor(context, 'destination', destinationId).id}" if destinationId else None,
        f"definition:{definitionId}" if definitionId else None,
    ]
    named = [scope for scope in scopes if scope is not None]
    if len(named) > 1:
        raise Problem(400, "name at most one of connectionId, sourceId, destinationId, definitionId")
    query = JobQuery(
        scope=named[0] if named else None,
        types=TYPES_IN[jobType] if jobType else (),
        status=JobStatus(status) if status else None,
        created_from=parse_when(createdAtStart, "createdAtStart"),
        created_to=parse_when(createdAtEnd, "createdAtEnd"),
        order_by=order_by,
        descending=descending,
    )

    def fetch(count: int, start: int) -> list[Job]:
        return context.store.page_jobs(JobQuery(**{**query.__dict__, "limit": count, "offset": start}))

    return page(request, fetch, limit, offset, lambda j: job_doc(context, j, with_output=False))


@router.get("/jobs/{jobId}", **ok(FerrymanJob))
def get_job(jobId: int, context: Context) -> dict[str, Any]:
    return job_doc(context, _job(context, jobId), with_output=True)


@router.get("/jobs/{jobId}/attempts", **ok(AttemptList))
def list_attempts(jobId: int, context: Context) -> dict[str, Any]:
    job = _job(context, jobId)
    found = [
        attempt_doc(a, context.store.list_stream_stats(a.id))
        for a in context.store.list_attempts(job.id, outputs=False)  # shown without them
    ]
    return {"jobId": job.id, "data": masked(found, context.service.job_secrets(job))}


def _attempt(context: ApiContext, job: Job, number: int | None) -> Attempt:
    attempts = context.store.list_attempts(job.id)
    if not attempts:
        raise Problem(409, f"job {job.id} has no attempt yet, so no log", "state-conflict")
    if number is None:
        return attempts[-1]
    for attempt in attempts:
        if attempt.number == number:
            return attempt
    raise not_found("attempt", f"{job.id}/{number}")


@router.get("/jobs/{jobId}/log", **ok(LogTail))
def log_tail(
    jobId: int,
    context: Context,
    attempt: Annotated[int | None, Query(ge=0)] = None,
    lines: Annotated[int, Query(ge=0, le=MAX_TAIL)] = 100,
) -> dict[str, Any]:
    """The last ``lines`` lines of an attempt's log (the last attempt's by default)."""
    job = _job(context, jobId)
    chosen = _attempt(context, job, attempt)
    found, _ = tail_lines(Path(chosen.log_path), lines)
    secrets = context.service.job_secrets(job)
    return {"jobId": job.id, "attemptNumber": chosen.number, "lines": [mask_text(x, secrets) for x in found]}


@router.get(
    "/jobs/{jobId}/log/follow",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
def log_follow(
    jobId: int,
    context: Context,
    attempt: Annotated[int | None, Query(ge=0)] = None,
    lines: Annotated[int, Query(ge=0, le=MAX_TAIL)] = 0,
) -> StreamingResponse:
    """An attempt's log as server-sent events: its last ``lines`` lines, then each new line
    (``event: line``) until the attempt ends; then one ``event: end`` with its status. A job with
    no attempt yet is waited for: its first attempt is followed once the engine starts it."""
    job = _job(context, jobId)
    chosen = _attempt(context, job, attempt) if attempt is not None else None
    secrets = context.service.job_secrets(job)
    return StreamingResponse(
        _events(context, job, chosen, lines, secrets),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _first_attempt(context: ApiContext, job: Job) -> Attempt | Job:
    """The job's last attempt once it has one, or the job if it ends without any."""
    while True:
        attempts = context.store.list_attempts(job.id)
        if attempts:
            return attempts[-1]
        job = context.store.get_job(job.id, catalog=False)
        if job.status.terminal:
            return job
        time.sleep(context.poll_s)


def _events(
    context: ApiContext, job: Job, chosen: Attempt | None, count: int, secrets: list[str]
) -> Iterator[str]:
    found = chosen or _first_attempt(context, job)
    if isinstance(found, Job):
        yield _event("end", json.dumps({"status": found.status.value}))
        return
    attempt: Attempt = found
    path = Path(attempt.log_path)
    latest = {"attempt": attempt}

    def ended() -> bool:
        for current in context.store.list_attempts(attempt.job_id):
            if current.id == attempt.id:
                latest["attempt"] = current
        return latest["attempt"].status.terminal

    head, offset = tail_lines(path, count)
    for line in head:
        yield _event("line", mask_text(line, secrets))
    while not path.exists() and not ended():  # the attempt has not written its first line yet
        time.sleep(context.poll_s)
    if path.exists():
        for line in follow(path, ended, start=offset, poll_s=context.poll_s):
            yield _event("line", mask_text(line, secrets))
    status = latest["attempt"].status.value
    yield _event("end", json.dumps({"attemptNumber": attempt.number, "status": status}))


def _event(name: str, data: str) -> str:
    lines = data.splitlines() or [""]
    return f"event: {name}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


# -- state ---------------------------------------------------------------------------------------


def _refuse_if_live(context: ApiContext, conn: Connection) -> None:
    for status in LIVE:
        live = context.store.list_jobs(scope=str(conn.id), status=status, limit=1)
        if live:
            raise Problem(
                409,
                f"connection {conn.uuid} has a {status} job ({live[0].id}): cancel it or let it end first",
                "try-again-later",
            )


@router.get("/connections/{connectionId}/state", **ok(ConnectionState))
def get_state(connectionId: UUID, context: Context) -> dict[str, Any]:
    conn = _connection(context, connectionId)
    return {"connectionId": conn.uuid, "state": context.service.shown_state(conn)}


@router.put("/connections/{connectionId}/state", **ok(ConnectionState))
def set_state(connectionId: UUID, body: Annotated[StateBody, Body()], context: Context) -> dict[str, Any]:
    """Replace the state the next sync starts from; 409 while a sync or reset is live."""
    conn = _connection(context, connectionId)
    if body.state is None:  # a client's unset field, not a request to forget the connection's progress
        raise Problem(422, "state is null: PUT a list of STATE messages ([] for none), or DELETE the state")
    _refuse_if_live(context, conn)
    state = context.service.set_state(conn, body.state)
    return {"connectionId": conn.uuid, "state": state}


@router.delete("/connections/{connectionId}/state", status_code=204, response_class=Response)
def clear_state(
    connectionId: UUID,
    context: Context,
    stream: Annotated[
        list[str] | None, Query(description="Clear only these streams (NAME or NAMESPACE.NAME).")
    ] = None,
) -> Response:
    conn = _connection(context, connectionId)
    _refuse_if_live(context, conn)
    context.service.clear_state(conn, [StreamRef.parse(text) for text in stream or []])
    return Response(status_code=204)


# -- spec, check and discover as jobs ------------------------------------------------------------


@router.post("/sources/{sourceId}/check", **ok(FerrymanJob))
def check_source(sourceId: UUID, context: Context) -> dict[str, Any]:
    job = context.service.enqueue_check(_actor(context, "source", sourceId))
    return job_doc(context, job, with_output=False)


@router.post("/destinations/{destinationId}/check", **ok(FerrymanJob))
def check_destination(destinationId: UUID, context: Context) -> dict[str, Any]:
    job = context.service.enqueue_check(_actor(context, "destination", destinationId))
    return job_doc(context, job, with_output=False)


@router.post("/sources/{sourceId}/discover", **ok(FerrymanJob))
def discover_source(sourceId: UUID, context: Context) -> dict[str, Any]:
    """A discover of the source (joining the one already live, as creating a connection does)."""
    job = context.service.discover_job(_actor(context, "source", sourceId))
    return job_doc(context, job, with_output=False)


@router.get("/definitions", **ok(DefinitionList))
def list_definitions(context: Context) -> dict[str, Any]:
    found = context.store.list_definitions()
    return {
        "data": [
            {
                "definitionId": d.uuid,
                "kind": d.kind,
                "slug": d.slug,
                "connector": d.connector,
                "builtin": d.builtin,
            }
            for d in found
        ]
    }


@router.post("/definitions/{definitionId}/spec", **ok(FerrymanJob))
def spec_definition(definitionId: UUID, context: Context) -> dict[str, Any]:
    found = [d for d in context.store.list_definitions() if d.uuid == str(definitionId)]
    if not found:
        raise not_found("definition", str(definitionId))
    job = context.service.enqueue_spec(found[0].connector, f"definition:{found[0].uuid}")
    return job_doc(context, job, with_output=False)
