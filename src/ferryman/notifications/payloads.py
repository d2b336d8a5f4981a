"""What a webhook receives: a Slack-compatible ``{"text": ...}`` or a JSON document.

Pure functions of an outbox event's ``detail`` (already masked by the caller), its kind and the
public URL the job links point under. docs/notifications.md shows both, for each kind.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ferryman.jobs.failures import MAX_SHOWN_CHARS

_VERB = {"failure": "failed", "success": "succeeded", "cancelled": "was cancelled"}
_NOUN = {"sync": "Sync", "reset_connection": "Reset"}


def job_link(base_url: str, job_id: int) -> str:
    """The job in the public API."""
    return f"{base_url.rstrip('/')}/v1/jobs/{job_id}"


def shown_url(url: str) -> str:
    """A webhook URL as logs and API responses show it: scheme and host only (Slack's URLs carry
    their token in the path)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "?", f":{parts.port}" if parts.port else ""
    except ValueError:  # a URL stored before it was checked ("host:80a", "[::1"): never a crash
        return f"{url.partition('://')[0]}://(invalid URL)/..."
    return f"{parts.scheme}://{host}{port}/..."


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover - the loop returns at GB


def _connection_name(detail: dict[str, Any]) -> str:
    connection = detail.get("connection") or {}
    name = connection.get("name")
    return str(name) if name else f"#{connection.get('id')} (deleted)"


def slack_text(kind: str, detail: dict[str, Any], base_url: str) -> str:
    """One or two lines a person reads in a channel."""
    name = _connection_name(detail)
    if kind == "disabled":
        reason = detail.get("reason") or "too many failed jobs in a row"
        return f"Connection {name} was disabled: {reason}. It runs again once it is set active."
    job = detail.get("job") or {}
    noun = _NOUN.get(str(job.get("type")), "Job")
    tries = job.get("attempts") or 0
    records = int(detail.get("records_committed") or 0)
    head = (
        f"{noun} of connection {name} {_VERB.get(kind, kind)} (job {job.get('id')}, "
        f"{_plural(tries, 'attempt')}): {_plural(records, 'record')} "
        f"({_size(int(detail.get('bytes_committed') or 0))}) committed."
    )
    failure = detail.get("failure")
    reason = ""
    if kind == "failure" and failure:
        reason = (
            f"\n{failure.get('origin')} {failure.get('type')}: {_first_line(str(failure.get('message')))}"
        )
    link = f"\n{job_link(base_url, int(job['id']))}" if job.get("id") is not None else ""
    return head + reason + link


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _first_line(text: str) -> str:
    """The first line, cut at MAX_SHOWN_CHARS: a connector's message may be one line of 50,000
    characters (an API's error body), and chat tools refuse a long text (Discord's ``/slack``
    over 2,000 characters) with a 400, so the failure would be told to nobody."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    first = lines[0] if len(lines[0]) <= MAX_SHOWN_CHARS else lines[0][: MAX_SHOWN_CHARS - 3] + "..."
    return first + (" [...]" if len(lines) > 1 else "")


def json_document(kind: str, detail: dict[str, Any], base_url: str, event_id: int) -> dict[str, Any]:
    """Everything the event knows, for programs."""
    connection = detail.get("connection") or {}
    document: dict[str, Any] = {
        "event": kind,
        "eventId": event_id,
        "connection": {
            "connectionId": connection.get("uuid"),
            "id": connection.get("id"),
            "name": connection.get("name"),
        },
    }
    job = detail.get("job")
    if job:
        document["job"] = {
            "jobId": job.get("id"),
            "jobType": job.get("type"),
            "status": job.get("status"),
            "attempts": job.get("attempts"),
            "createdAt": job.get("created_at"),
            "startedAt": job.get("started_at"),
            "endedAt": job.get("ended_at"),
            "url": job_link(base_url, int(job["id"])),
        }
        document["recordsCommitted"] = detail.get("records_committed")
        document["bytesCommitted"] = detail.get("bytes_committed")
        document["failure"] = detail.get("failure")
    if kind == "disabled" or detail.get("reason"):
        document["reason"] = detail.get("reason")
    return document


def render(kind: str, detail: dict[str, Any], format: str, base_url: str, event_id: int) -> dict[str, Any]:
    if format == "slack":
        return {"text": slack_text(kind, detail, base_url)}
    return json_document(kind, detail, base_url, event_id)
