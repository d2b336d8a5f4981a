"""Database rows to the frozen dataclasses of :mod:`ferryman.store.base`, and back for stats."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy.engine import Row

from ferryman.jobs.states import AttemptStatus, JobStatus, JobType
from ferryman.store.base import (
    Actor,
    Attempt,
    Connection,
    Job,
    StreamStat,
    UnreadCatalog,
    UnreadConfig,
    UnreadJobCatalog,
)

# Ids are 64-bit integers in both databases: a larger number names no row (and would overflow).
MAX_ID = 2**63 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


def actor(row: Row[Any]) -> Actor:
    return Actor(
        id=row.id,
        kind=row.kind,
        name=row.name,
        connector=row.connector,
        config=row.config,
        created_at=row.created_at,
        resources=row.resources,
        spec=row.spec,
        uuid=row.uuid,
    )


def connection(row: Row[Any]) -> Connection:
    return Connection(
        id=row.id,
        name=row.name,
        source_id=row.source_id,
        destination_id=row.destination_id,
        catalog=row.catalog if "catalog" in row._fields else cast(dict[str, Any], UnreadCatalog()),
        namespace_definition=row.namespace_definition,
        namespace_format=row.namespace_format,
        prefix=row.prefix,
        status=row.status,
        schedule=row.schedule,
        created_at=row.created_at,
        uuid=row.uuid,
        next_run_at=row.next_run_at,
        status_reason=row.status_reason,
        active_since=row.active_since,
        counted_streams=getattr(row, "counted_streams", None),  # list_connections(catalogs=False)
    )


def job(row: Row[Any]) -> Job:
    return Job(
        id=row.id,
        type=JobType(row.type),
        scope=row.scope,
        # None: page_jobs left it unread (see UnreadConfig)
        config=cast(dict[str, Any], UnreadConfig()) if row.config is None else row.config,
        status=JobStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        next_attempt_at=row.next_attempt_at,
        cancel_requested=bool(row.cancel_requested),
        scheduled_for=row.scheduled_for,
    )


def job_without_catalog(row: Row[Any]) -> Job:
    """A job whose row was read with a sync's or reset's catalog taken out of its config."""
    found = job(row)
    if not found.type.is_replication:
        return found
    return dataclasses.replace(found, config={**found.config, "catalog": UnreadJobCatalog()})


def attempt(row: Row[Any]) -> Attempt:
    return Attempt(
        id=row.id,
        job_id=row.job_id,
        number=row.number,
        status=AttemptStatus(row.status),
        log_path=row.log_path,
        created_at=row.created_at,
        updated_at=row.updated_at,
        ended_at=row.ended_at,
        output=row.output,
        failure_summary=row.failure_summary,
        engine_id=row.engine_id,
        heartbeat_at=row.heartbeat_at,
        pids=list(row.pids or []),
    )


def stream_stat(row: Row[Any]) -> StreamStat:
    return StreamStat(
        attempt_id=row.attempt_id,
        name=row.name,
        namespace=row.namespace or None,
        records_emitted=row.records_emitted,
        bytes_emitted=row.bytes_emitted,
        records_committed=row.records_committed,
        bytes_committed=row.bytes_committed,
        estimated_records=row.estimated_records,
        estimated_bytes=row.estimated_bytes,
    )


def stream_stat_values(attempt_id: int, stat: StreamStat) -> dict[str, Any]:
    """The row of one stat; a missing namespace is stored as '' (see the schema module)."""
    return {"attempt_id": attempt_id, **stat.figures(), "namespace": stat.namespace or ""}
