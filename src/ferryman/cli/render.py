"""Store rows as JSON documents and as tables for people. Presentation only.

Configs are masked by the caller (it knows the specs); every other string goes through
:func:`ferryman.cli.common.print_json`, which masks the secret values it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ferryman.cli.common import count, duration, seconds_between, when
from ferryman.jobs.outcomes import failure_summary

if TYPE_CHECKING:
    from ferryman.store.base import Actor, Attempt, Connection, Job, StreamStat


class Names:
    """Connection and actor names for job scopes (``"3"`` or ``"source:2"``)."""

    def __init__(self, connections: list[Connection], actors: list[Actor]) -> None:
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


def actor_doc(actor: Actor, masked_config: Any) -> dict[str, Any]:
    return {
        "id": actor.id,
        "kind": actor.kind,
        "name": actor.name,
        "connector": actor.connector,
        "config": masked_config,
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


def connection_doc(connection: Connection, source: Actor, destination: Actor) -> dict[str, Any]:
    return {
        "id": connection.id,
        "name": connection.name,
        "source": source.name,
        "destination": destination.name,
        "status": connection.status,
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


# -- tables -------------------------------------------------------------------------------------


# A job type in the table, short enough for 80 columns (the scope says source or destination);
# --json and --type keep Airbyte's names.
SHORT_TYPES = {
    "check_connection_source": "check",
    "check_connection_destination": "check",
    "discover_schema": "discover",
    "reset_connection": "reset",
}


def jobs_table(rows: list[dict[str, Any]]) -> Table:
    """Fits 80 columns: only the scope gives way, cut with an ellipsis rather than wrapped."""
    table = Table(box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for column in ("id", "type", "scope", "status", "attempts", "created", "duration"):
        # The scope alone may shrink (rich shrinks wrappable columns first); its cells do not
        # wrap, so a long name is cut to the room left instead of spilling over lines.
        table.add_column(column, no_wrap=column != "scope", min_width=8 if column == "scope" else None)
    for row in rows:
        cancelling = row["cancel_requested"] and row["status"] == "running"
        table.add_row(
            str(row["id"]),
            SHORT_TYPES.get(row["type"], row["type"]),
            Text(row["label"], no_wrap=True, overflow="ellipsis"),
            "cancelling" if cancelling else row["status"],
            str(row["attempts"]),
            when(row["created_at"], short=True),
            duration(row["duration_s"]),
        )
    return table


def stats_table(stats: list[dict[str, Any]], title: str | None = None) -> Table:
    table = Table("stream", "emitted", "committed", "MB", title=title, title_justify="left")
    for stat in stats:
        table.add_row(
            escape(stat["name"] if not stat["namespace"] else f"{stat['namespace']}.{stat['name']}"),
            count(stat["records_emitted"]),
            count(stat["records_committed"]),
            f"{stat['bytes_emitted'] / 1e6:,.1f}",
        )
    return table


def streams_table(streams: list[dict[str, Any]]) -> Table:
    table = Table("stream", "sync mode", "destination sync mode", "cursor", "primary key")
    for stream in streams:
        table.add_row(
            escape(stream["name"] if not stream["namespace"] else f"{stream['namespace']}.{stream['name']}"),
            stream["sync_mode"] or "",
            stream["destination_sync_mode"] or "",
            ".".join(stream["cursor_field"]),
            ", ".join(".".join(part) for part in stream["primary_key"]),
        )
    return table
