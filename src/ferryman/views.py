"""Read views: store rows as the JSON documents every surface shows, masked in one place.

The CLI prints these documents (``--json``) and renders them as tables; the HTTP API's own routes
can serve them as they are. Configs are masked by the actor's kept spec, and every string of a
job's document by the job's secret values (:mod:`ferryman.masking`), so no surface has to
remember to mask.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ferryman.masking import masked_config

# The store package is heavy (SQLAlchemy, Alembic), and the outcomes (msgspec) and schedules
# (zoneinfo) are imported by the functions that read them: the CLI imports this module at
# start-up, `--help` included.
if TYPE_CHECKING:
    from ferryman.store.base import Actor, Attempt, Connection, ConnectionLabel, Job, StreamStat


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """A moment with its time zone (SQLite gives naive UTC datetimes back)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None:
        return None
    return max(0.0, (aware(end or utcnow()) - aware(start)).total_seconds())


class Names:
    """Connection and actor names for job scopes (``"3"`` or ``"source:2"``)."""

    def __init__(self, connections: list[ConnectionLabel], actors: list[Actor]) -> None:
        self._connections = {str(c.id): c.name for c in connections}
        self._actors = {f"{a.kind}:{a.id}": f"{a.kind} {a.name}" for a in actors}

    def connection(self, job: Job) -> str | None:
        if job.type.is_replication and job.scope is not None:
            return self._connections.get(job.scope)
        return None

    def scope(self, job: Job) -> str:
        if job.scope is None:  # a spec job: its connector
            return str(job.config.get("connector") or "")
        if job.type.is_replication:
            return self._connections.get(job.scope, f"connection #{job.scope} (deleted)")
        return self._actors.get(job.scope, job.scope)


def actor_doc(actor: Actor) -> dict[str, Any]:
    """An actor with its config masked by its kept spec."""
    return {
        "id": actor.id,
        "kind": actor.kind,
        "name": actor.name,
        "connector": actor.connector,
        "config": masked_config(actor),
        "resources": actor.resources,
        "created_at": actor.created_at,
    }


def streams_doc(catalog: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "name": c["stream"]["name"],
            "namespace": c["stream"].get("namespace"),
            "sync_mode": c.get("sync_mode"),
            "destination_sync_mode": c.get("destination_sync_mode"),
            "cursor_field": c.get("cursor_field") or [],
            "primary_key": c.get("primary_key") or [],
        }
        for c in catalog.get("streams", [])
    ]


def schedule_text(connection: Connection) -> str:
    """``manual``, ``every 2h`` or ``cron 0 0 12 * * ? (UTC)``; a schedule stored unreadable
    by an older version is shown as stored."""
    from ferryman.jobs.schedules import InvalidSchedule, from_document

    try:
        return from_document(connection.schedule).describe()
    except InvalidSchedule:
        return f"unreadable: {connection.schedule}"


def connection_doc(connection: Connection, source: Actor, destination: Actor) -> dict[str, Any]:
    return {
        "id": connection.id,
        "name": connection.name,
        "source": source.name,
        "destination": destination.name,
        "status": connection.status,
        "status_reason": connection.status_reason,
        "schedule": schedule_text(connection),
        "next_run_at": connection.next_run_at,
        "namespace_definition": connection.namespace_definition,
        "namespace_format": connection.namespace_format,
        "prefix": connection.prefix,
        "streams": streams_doc(connection.catalog),
        "created_at": connection.created_at,
    }


def job_doc(job: Job, names: Names, attempts: int) -> dict[str, Any]:
    """A job without its config snapshot (which holds the actors' secrets)."""
    ended = job.updated_at if job.status.terminal else None
    return {
        "id": job.id,
        "type": job.type.value,
        "status": job.status.value,
        "scope": job.scope,
        "connection": names.connection(job),
        "label": names.scope(job),
        "attempts": attempts,
        "cancel_requested": job.cancel_requested,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "updated_at": job.updated_at,
        "next_attempt_at": job.next_attempt_at,
        "duration_s": seconds_between(job.started_at or job.created_at, ended),
    }


def attempt_doc(attempt: Attempt, stats: list[StreamStat]) -> dict[str, Any]:
    from ferryman.jobs.outcomes import failure_summary

    summary = failure_summary(attempt.failure_summary)
    return {
        "number": attempt.number,
        "status": attempt.status.value,
        "created_at": attempt.created_at,
        "ended_at": attempt.ended_at,
        "duration_s": seconds_between(attempt.created_at, attempt.ended_at),
        "engine_id": attempt.engine_id,
        "failures": [f.to_dict() for f in summary.failures],
        "partial_success": summary.partial_success,
        "streams": [s.figures() for s in stats],
        "log": attempt.log_path,
        "output": attempt.output,
    }


def details_doc(job: Job, names: Names, attempts: list[tuple[Attempt, list[StreamStat]]]) -> dict[str, Any]:
    return {
        "job": job_doc(job, names, len(attempts)),
        "attempts": [attempt_doc(a, stats) for a, stats in attempts],
        "log": attempts[-1][0].log_path if attempts else None,
    }
