"""A job's attempts as the APIs show them: failures, per-stream stats and totals, and the scope a
job belongs to (a connection, a source, a destination or a connector definition) by its UUID.

Failure texts were masked when they were stored; :func:`masked` masks every string once more with
the job's secret values (a value can only be masked by a surface that knows it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ferryman.api.documents import iso, omit_nulls
from ferryman.secrets import mask_text
from ferryman.store.base import Attempt, Job, JobStore, NotFound, StreamStat

# Ferryman's job types under the names its own routes use; the config API keeps Airbyte's.
SHORT_TYPES = {
    "spec": "spec",
    "check_connection_source": "check",
    "check_connection_destination": "check",
    "discover_schema": "discover",
    "sync": "sync",
    "reset_connection": "reset",
}
CONFIG_TYPES = {"spec": "get_spec"}  # else the job type's value is Airbyte's configType


def stats_doc(stats: Iterable[StreamStat]) -> dict[str, int]:
    """Airbyte's AttemptStats: the counts summed over the streams (committed only when known)."""
    listed = list(stats)
    totals = {
        "recordsEmitted": sum(s.records_emitted for s in listed),
        "bytesEmitted": sum(s.bytes_emitted for s in listed),
    }
    if listed and all(s.records_committed is not None for s in listed):
        totals["recordsCommitted"] = sum(s.records_committed or 0 for s in listed)
        totals["bytesCommitted"] = sum(s.bytes_committed or 0 for s in listed)
    return totals


def stream_stats_doc(stat: StreamStat) -> dict[str, Any]:
    figures = omit_nulls(
        {
            "recordsEmitted": stat.records_emitted,
            "bytesEmitted": stat.bytes_emitted,
            "recordsCommitted": stat.records_committed,
            "bytesCommitted": stat.bytes_committed,
            "estimatedRecords": stat.estimated_records,
            "estimatedBytes": stat.estimated_bytes,
        }
    )
    return omit_nulls({"streamName": stat.name, "streamNamespace": stat.namespace, "stats": figures})


def failure_doc(failure: dict[str, Any]) -> dict[str, Any]:
    """A stored failure under Airbyte's FailureReason names."""
    stream = failure.get("stream")
    return omit_nulls(
        {
            "failureOrigin": failure.get("origin"),
            "failureType": failure.get("type"),
            "externalMessage": failure.get("message"),
            "internalMessage": failure.get("internal_message"),
            "stacktrace": failure.get("stack_trace"),
            "retryable": failure.get("retryable"),
            "timestamp": failure.get("timestamp_ms"),
            "streamDescriptor": {"name": stream} if stream else None,
        }
    )


def failure_summary_doc(attempt: Attempt) -> dict[str, Any] | None:
    summary = attempt.failure_summary
    if not summary or not summary.get("failures"):
        return None
    return omit_nulls(
        {
            "failures": [failure_doc(f) for f in summary["failures"]],
            "partialSuccess": summary.get("partial_success"),
        }
    )


def attempt_doc(attempt: Attempt, stats: list[StreamStat]) -> dict[str, Any]:
    """Ferryman's view of an attempt: Airbyte's AttemptRead fields, ISO times."""
    totals = stats_doc(stats)
    return omit_nulls(
        {
            "attemptNumber": attempt.number,
            "status": attempt.status.value,
            "createdAt": iso(attempt.created_at),
            "updatedAt": iso(attempt.updated_at),
            "endedAt": iso(attempt.ended_at) if attempt.ended_at else None,
            "recordsSynced": totals.get("recordsCommitted"),
            "bytesSynced": totals.get("bytesCommitted"),
            "totalStats": totals,
            "streamStats": [stream_stats_doc(s) for s in stats],
            "failureSummary": failure_summary_doc(attempt),
        }
    )


def masked(document: Any, secrets: list[str]) -> Any:
    """Every string in a document with the secret values masked."""
    if not secrets:
        return document
    if isinstance(document, str):
        return mask_text(document, secrets)
    if isinstance(document, dict):
        return {key: masked(value, secrets) for key, value in document.items()}
    if isinstance(document, list):
        return [masked(value, secrets) for value in document]
    return document


def scope_ids(store: JobStore, job: Job) -> dict[str, str]:
    """What the job belongs to, by UUID: {connectionId} of a sync or reset, {sourceId} or
    {destinationId} of a check or discover, {definitionId} of a spec. Empty when it is gone."""
    scope = job.scope or ""
    kind, _, key = scope.partition(":")
    try:
        if scope.isdigit():
            return {"connectionId": store.get_connection_by_id(int(scope), catalog=False).uuid}
        if kind in ("source", "destination") and key.isdigit():
            return {f"{kind}Id": store.get_actor_by_id(kind, int(key)).uuid}
    except NotFound:
        return {}
    if kind == "definition" and key:
        return {"definitionId": key}
    return {}
