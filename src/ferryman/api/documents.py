"""Ferryman's rows as Airbyte's public API documents: camelCase, UUIDs, epoch seconds, secrets
masked, and null fields left out (dagster parses every date field that is present)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from ferryman import masking
from ferryman.jobs import schedules
from ferryman.jobs.states import JobStatus, JobType
from ferryman.protocol.sync_modes import AIRBYTE_NAMES, StreamMode
from ferryman.store.base import Actor, Connection, Definition, Job, JobStore, Workspace

PUBLIC_JOB_TYPES = {JobType.SYNC: "sync", JobType.RESET: "reset"}
AIRBYTE_MODE_NAMES = {mode: name for name, mode in AIRBYTE_NAMES.items()}
# Ferryman's namespace definitions under Airbyte's names.
NAMESPACES_OUT = {"source": "source", "destination": "destination", "customformat": "custom_format"}
NAMESPACES_IN = {value: key for key, value in NAMESPACES_OUT.items()}


def omit_nulls(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if value is not None}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment else 0


def iso_duration(seconds: float) -> str:
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return text + (f"{secs}S" if secs or text == "PT" else "")


def workspace_doc(workspace: Workspace) -> dict[str, Any]:
    return {
        "workspaceId": workspace.uuid,
        "name": workspace.name,
        "dataResidency": "auto",
        "notifications": {},
    }


@dataclass
class Lookups:
    """What documents refer to, read once per request: the workspace, the definitions and the
    connections' UUIDs by id."""

    store: JobStore
    _workspace: Workspace | None = None
    _definitions: list[Definition] | None = None
    _connections: dict[int, str] | None = None

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = self.store.default_workspace()
        return self._workspace

    def definition(self, actor: Actor) -> Definition:
        if self._definitions is None:
            self._definitions = self.store.list_definitions()
        for definition in self._definitions:
            if definition.kind == actor.kind and definition.connector == actor.connector:
                return definition
        return self.store.definition_for(actor.kind, actor.connector)

    def connection_uuid(self, scope: str | None) -> str:
        if not scope or not scope.isdigit():
            return str(uuid5(NAMESPACE_URL, f"ferryman:scope:{scope}"))
        if self._connections is None:  # their ids alone: a catalog can be megabytes
            self._connections = {c.id: c.uuid for c in self.store.connection_labels()}
        key = int(scope)
        # A deleted connection's jobs keep a stable id of their own.
        return self._connections.get(key) or str(uuid5(NAMESPACE_URL, f"ferryman:c:{key}"))


def actor_doc(actor: Actor, lookups: Lookups) -> dict[str, Any]:
    definition = lookups.definition(actor)
    configuration = masking.masked_config(actor)
    if actor.kind == "destination":
        # The SDK picks the destination's config model by this field, which must be inside.
        configuration = {**configuration, "destinationType": definition.slug}
    return {
        f"{actor.kind}Id": actor.uuid,
        "name": actor.name,
        f"{actor.kind}Type": definition.slug,
        "definitionId": definition.uuid,
        "workspaceId": lookups.workspace.uuid,
        "configuration": configuration,
        "createdAt": epoch(actor.created_at),
    }


def stream_doc(configured: dict[str, Any]) -> dict[str, Any]:
    stream = configured["stream"]
    mode = StreamMode(configured["sync_mode"], configured["destination_sync_mode"])
    return omit_nulls(
        {
            "name": stream["name"],
            "namespace": stream.get("namespace"),
            "syncMode": AIRBYTE_MODE_NAMES.get(mode, "full_refresh_overwrite"),
            "cursorField": configured.get("cursor_field") or None,
            "primaryKey": configured.get("primary_key") or None,
        }
    )


def schedule_doc(conn: Connection) -> dict[str, Any]:
    """Airbyte's ``schedule``: a cron expression followed by its zone (Airbyte echoes
    ``<expr> UTC``), a basic one as ``basicTiming`` (plus its ``units`` and ``timeUnit``)."""
    try:
        schedule = schedules.from_document(conn.schedule)
    except schedules.InvalidSchedule:  # stored unchecked by an older version: shown as stored
        return dict(conn.schedule or {"scheduleType": "manual"})
    if schedule.type is schedules.ScheduleType.CRON:
        return {"scheduleType": "cron", "cronExpression": f"{schedule.cron} {schedule.timezone}"}
    if schedule.type is schedules.ScheduleType.BASIC:
        return {"scheduleType": "basic", "basicTiming": schedule.basic_timing, **schedule.to_document()}
    return {"scheduleType": "manual"}


def connection_doc(conn: Connection, lookups: Lookups) -> dict[str, Any]:
    source = lookups.store.get_actor_by_id("source", conn.source_id)
    destination = lookups.store.get_actor_by_id("destination", conn.destination_id)
    return omit_nulls(
        {
            "connectionId": conn.uuid,
            "name": conn.name,
            "sourceId": source.uuid,
            "destinationId": destination.uuid,
            "workspaceId": lookups.workspace.uuid,
            "status": conn.status,
            "statusReason": conn.status_reason,
            "schedule": schedule_doc(conn),
            # Ours: when the scheduler runs it next (epoch seconds, as createdAt); absent: never.
            "nextSync": epoch(conn.next_run_at) if conn.next_run_at else None,
            "configurations": {"streams": [stream_doc(s) for s in conn.catalog.get("streams", [])]},
            "createdAt": epoch(conn.created_at),
            "tags": [],
            "nonBreakingSchemaUpdatesBehavior": "ignore",
            "namespaceDefinition": NAMESPACES_OUT.get(conn.namespace_definition, conn.namespace_definition),
            "namespaceFormat": conn.namespace_format,
            "prefix": conn.prefix,
        }
    )


def job_totals(store: JobStore, job: Job) -> tuple[int, int]:
    """Records and bytes committed, summed over the job's attempts (Airbyte's aggregatedStats)."""
    totals = store.job_totals(job.id)
    return totals.records_committed, totals.bytes_committed


def job_doc(job: Job, lookups: Lookups) -> dict[str, Any]:
    rows, bytes_ = job_totals(lookups.store, job)
    pending = job.status is JobStatus.PENDING
    return omit_nulls(
        {
            "jobId": job.id,
            "status": job.status.value,
            "jobType": PUBLIC_JOB_TYPES.get(job.type, job.type.value),
            "startTime": iso(job.created_at),
            "connectionId": lookups.connection_uuid(job.scope),
            "lastUpdatedAt": iso(job.updated_at) if job.status.terminal else None,
            "duration": None if pending else iso_duration((job.updated_at - job.created_at).total_seconds()),
            "rowsSynced": None if pending else rows,
            "bytesSynced": None if pending else bytes_,
        }
    )
