"""What each page shows, read from the job service and its store: plain dataclasses for the
templates, every text that could hold a secret already masked (configs by their spec, failures,
outputs, state and log lines by the secret values of the job or connection they belong to)."""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ferryman import masking
from ferryman.jobs.failures import most_specific_message
from ferryman.jobs.outcomes import ConnectorOutcome, failure_summary
from ferryman.jobs.states import JobStatus, JobType
from ferryman.logtail import tail_lines
from ferryman.protocol.stream_refs import label
from ferryman.protocol.sync_modes import StreamKeys, StreamMode, supported_modes
from ferryman.secrets import mask_strings, mask_text
from ferryman.service import DESTINATION, SOURCE, JobService
from ferryman.store.base import Actor, Attempt, Connection, ConnectionLabel, Job, JobQuery, StreamStat
from ferryman.views import seconds_between
from ferryman.web.schedule import describe, next_run

REPLICATION = (JobType.SYNC, JobType.RESET)
LIVE = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.INCOMPLETE)
CHECKS = (
    JobType.CHECK_SOURCE,
    JobType.CHECK_DESTINATION,
)  # a check job's page shows its verdict (its output)
LOG_TAIL_LINES = 1000  # of a log shown in the page; the rest is in the download
LOG_TAIL_BYTES = 1 << 20  # and no more than this of it: a line may be 64 kB long


@dataclass(frozen=True)
class Figures:
    records: int = 0
    bytes: int = 0
    attempts: int = 0


@dataclass(frozen=True)
class JobRow:
    job: Job
    figures: Figures
    duration_s: float | None

    @property
    def live(self) -> bool:
        return self.job.status in LIVE


@dataclass(frozen=True)
class ConnectionRow:
    connection: Connection
    source: Actor
    destination: Actor
    schedule: str
    next_run: datetime | None
    last: JobRow | None
    health: str  # ok | failing | running | cancelled | never | paused

    @property
    def health_label(self) -> str:
        return HEALTH_LABELS[self.health]


HEALTH_LABELS = {
    "ok": "healthy: the last job succeeded",
    "failing": "failing: the last job failed",
    "running": "running",
    "cancelled": "the last job was cancelled",
    "never": "never run",
    "paused": "disabled",
}


def figures(service: JobService, job: Job, attempts: list[Attempt] | None = None) -> Figures:
    """Records and bytes a job moved: committed where known (else emitted), over its attempts."""
    if attempts is None:  # a row of a list: the store adds them up
        totals = service.store.job_totals(job.id)
        return Figures(totals.records, totals.bytes, totals.attempts)
    found = attempts
    records = size = 0
    for attempt in found:
        for stat in service.store.list_stream_stats(attempt.id):
            records += stat.records_committed if stat.records_committed is not None else stat.records_emitted
            size += stat.bytes_committed if stat.bytes_committed is not None else stat.bytes_emitted
    return Figures(records, size, len(found))


def job_row(service: JobService, job: Job) -> JobRow:
    ended = job.updated_at if job.status.terminal else None
    return JobRow(job, figures(service, job), seconds_between(job.started_at or job.created_at, ended))


def health(connection: Connection, last: Job | None) -> str:
    if connection.status != "active":
        return "paused"
    if last is None:
        return "never"
    if last.status in LIVE:
        return "running"
    return {JobStatus.SUCCEEDED: "ok", JobStatus.FAILED: "failing"}.get(last.status, "cancelled")


def connection_rows(service: JobService, wanted: str = "") -> list[ConnectionRow]:
    """Every connection with its last sync or reset; ``wanted``: a health or a connection status."""
    store = service.store
    actors = {(a.kind, a.id): a for kind in (SOURCE, DESTINATION) for a in store.list_actors(kind)}
    rows = []
    for conn in store.list_connections(catalogs=False):  # the list shows none of their streams
        last_jobs = store.page_jobs(JobQuery(scope=str(conn.id), types=REPLICATION, descending=True, limit=1))
        last = job_row(service, last_jobs[0]) if last_jobs else None
        row = ConnectionRow(
            conn,
            actors[(SOURCE, conn.source_id)],
            actors[(DESTINATION, conn.destination_id)],
            describe(conn.schedule),
            next_run(conn),
            last,
            health(conn, last.job if last else None),
        )
        if _matches(row, wanted):
            rows.append(row)
    return rows


def _matches(row: ConnectionRow, wanted: str) -> bool:
    if not wanted:
        return True
    if wanted in ("active", "inactive"):
        return row.connection.status == wanted
    return row.health == wanted


# -- one connection ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamRow:
    name: str
    namespace: str | None
    mode: str
    modes: list[str]
    cursor: list[str]
    primary_key: list[list[str]]

    @property
    def label(self) -> str:
        return label(self.namespace, self.name)

    @property
    def field(self) -> str:
        """The form field of its mode: keyed by (namespace, name), never by the name alone."""
        return mode_field(self.namespace, self.name)


def mode_field(namespace: str | None, name: str) -> str:
    """``mode.`` and the stream's (namespace, name) as URL-safe base64 of its JSON: one field per
    stream, whatever characters the name holds, and two namespaces' ``users`` never share one."""
    token = base64.urlsafe_b64encode(json.dumps([namespace, name]).encode()).rstrip(b"=")
    return "mode." + token.decode("ascii")


def stream_rows(service: JobService, conn: Connection, destination: Actor) -> list[StreamRow]:
    """Each stream with its mode and the modes both connectors support for it."""
    dest_modes = service.destination_modes(destination)
    found = []
    for configured in conn.catalog.get("streams", []):
        stream = configured["stream"]
        keys = StreamKeys.of(stream, configured.get("cursor_field"), configured.get("primary_key"))
        current = str(StreamMode(configured["sync_mode"], configured["destination_sync_mode"]))
        modes = [str(mode) for mode in supported_modes(stream, dest_modes, keys)]
        found.append(
            StreamRow(
                stream["name"],
                stream.get("namespace"),
                current,
                modes if current in modes else [current, *modes],
                keys.cursor,
                keys.primary_key,
            )
        )
    return found


@dataclass
class JobPage:
    rows: list[JobRow]
    offset: int
    limit: int
    has_next: bool


def job_page(service: JobService, scope: str | None, offset: int, limit: int) -> JobPage:
    """One page of a scope's jobs, newest first; one more is read to know whether a next exists."""
    types = REPLICATION if scope is not None and scope.isdigit() else ()
    query = JobQuery(scope=scope, types=types, descending=True, offset=offset, limit=limit + 1)
    found = service.store.page_jobs(query)
    return JobPage([job_row(service, j) for j in found[:limit]], offset, limit, len(found) > limit)


def state_text(service: JobService, conn: Connection, source: Actor, destination: Actor) -> str:
    state = service.store.get_state(conn.id)
    if not state:
        return ""
    shown = mask_strings(state, masking.actor_secrets(source, destination))
    return json.dumps(shown, indent=2, sort_keys=True, default=str)


# -- one job -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureView:
    origin: str
    type: str
    stream: str | None
    message: str
    retryable: bool


@dataclass
class AttemptView:
    attempt: Attempt
    duration_s: float | None
    failures: list[FailureView]
    streams: list[StreamStat]
    log_lines: list[str] = field(default_factory=list)
    log_offset: int = 0


@dataclass
class JobView:
    job: Job
    label: str
    connection: ConnectionLabel | None
    attempts: list[AttemptView]
    figures: Figures
    check: tuple[str, str] | None  # a check job's verdict and message

    @property
    def live(self) -> bool:
        return self.job.status in LIVE

    @property
    def following(self) -> AttemptView | None:
        """The attempt whose log the page follows: the last one, while it runs."""
        last = self.attempts[-1] if self.attempts else None
        return last if last is not None and not last.attempt.status.terminal else None


def job_view(service: JobService, job_id: int) -> JobView:
    # Without a sync's catalog and its attempts' outputs (megabytes at thousands of streams): the
    # page shows neither; a check's verdict is its last output.
    job = service.store.get_job(job_id, catalog=False)
    secrets = service.job_secrets(job)
    attempts = service.store.list_attempts(job.id, outputs=job.type in CHECKS)
    views = [
        AttemptView(
            a,
            seconds_between(a.created_at, a.ended_at),
            failure_views(a, secrets),
            service.store.list_stream_stats(a.id),
        )
        for a in attempts
    ]
    if views:
        lines, offset = tail_lines(Path(attempts[-1].log_path), LOG_TAIL_LINES, LOG_TAIL_BYTES)
        views[-1].log_lines = [mask_text(line, secrets) for line in lines]
        views[-1].log_offset = offset
    connection = None
    if job.type.is_replication and job.scope and job.scope.isdigit():
        connection = next((c for c in service.store.connection_labels() if str(c.id) == job.scope), None)
    return JobView(
        job,
        service.names().scope(job),
        connection,
        views,
        figures(service, job, attempts),
        _check_verdict(service, job, attempts, secrets),
    )


def failure_views(attempt: Attempt, secrets: list[str]) -> list[FailureView]:
    found = []
    for failure in failure_summary(attempt.failure_summary).failures:
        message, internal, stack = (
            mask_text(text or "", secrets)
            for text in (failure.message, failure.internal_message, failure.stack_trace)
        )
        found.append(
            FailureView(
                str(failure.origin),
                str(failure.type),
                failure.stream,
                most_specific_message(message, internal, stack),
                failure.retryable,
            )
        )
    return found


def _check_verdict(
    service: JobService, job: Job, attempts: list[Attempt], secrets: list[str]
) -> tuple[str, str] | None:
    if job.type not in CHECKS or not attempts:
        return None
    outcome = ConnectorOutcome.from_document(attempts[-1].output or {})
    if outcome.check is None:
        return None
    return outcome.check.status, mask_text(outcome.check.message or "", secrets)


# -- sources and destinations ---------------------------------------------------------------------


def config_text(actor: Actor) -> str:
    """The actor's config as people see it: secret fields masked by its kept spec."""
    return json.dumps(masking.masked_config(actor), indent=2, sort_keys=True, default=str)


def last_check(service: JobService, actor: Actor) -> JobView | None:
    kind = JobType.CHECK_SOURCE if actor.kind == SOURCE else JobType.CHECK_DESTINATION
    found = service.store.list_jobs(scope=f"{actor.kind}:{actor.id}", type=kind, limit=1)
    return job_view(service, found[0].id) if found else None


def live_job(service: JobService, conn: Connection) -> Job | None:
    for status in LIVE:
        found = service.store.list_jobs(scope=str(conn.id), status=status, limit=1)
        if found:
            return found[0]
    return None


def connection_counts(service: JobService, kind: str) -> Counter[int]:
    """How many connections each source (or destination) is in, from one read of them all (one
    read per actor made the list of 1,000 sources take a minute)."""
    column = "source_id" if kind == SOURCE else "destination_id"
    return Counter(getattr(c, column) for c in service.store.connection_labels())


def actor_connections(service: JobService, actor: Actor) -> list[ConnectionLabel]:
    column = "source_id" if actor.kind == SOURCE else "destination_id"
    return [c for c in service.store.connection_labels() if getattr(c, column) == actor.id]


def spec_schema(spec: dict[str, Any] | None) -> dict[str, Any]:
    schema = (spec or {}).get("connectionSpecification")
    return schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
