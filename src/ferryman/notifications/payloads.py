"""What a webhook receives: a Slack-compatible ``{"text": ...}`` or a JSON document.

Pure functions of an outbox event's ``detail`` (already masked by the caller), its kind and the
public URL the job links point under. docs/notifications.md shows both, for each kind.

In the slack text, every piece Ferryman did not write (connection names, failure messages, a
disabled connection's reason) goes through :func:`shown_text`: Slack reads ``<!channel>``,
``<@U123>`` and ``<http://evil|click here>`` in a text as a ping or a disguised link, so ``&``,
``<`` and ``>`` are escaped as its message formatting asks; a line break in a name cannot forge
a line of its own; and an ``@here`` or ``@everyone`` (which Mattermost, Rocket.Chat and Discord
read as a ping) is broken by a zero-width space. The JSON document carries the text as it is.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from ferryman.jobs.failures import MAX_SHOWN_CHARS

MAX_NAME_CHARS = 200  # of a connection's name in the slack text, escaped; the JSON has it whole
_SLACK_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MENTION = re.compile(r"(?<![\w@])@(?=\w)")  # "@here", "@channel": not "ops@example.com"
_ZERO_WIDTH_SPACE = "\u200b"
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
        host = f"[{host}]" if ":" in host else host  # an IPv6 address, as it is written in a URL
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


def shown_text(text: str, limit: int) -> str:
    """``text``, which Ferryman did not write, as the slack text shows it: on one line, mentions
    broken, ``&``, ``<`` and ``>`` escaped, and cut (with "...") so that the escaped text is at
    most ``limit`` characters long; an escape is never cut in two."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    quiet = _MENTION.sub("@" + _ZERO_WIDTH_SPACE, flat)
    pieces = [_SLACK_ESCAPES.get(c, c) for c in quiet]
    if sum(map(len, pieces)) <= limit:
        return "".join(pieces)
    kept, size = [], 0
    for piece in pieces:
        if size + len(piece) > limit - 3:
            break
        kept.append(piece)
        size += len(piece)
    return "".join(kept) + "..."


def _connection_name(detail: dict[str, Any]) -> str:
    connection = detail.get("connection") or {}
    name = connection.get("name")
    return shown_text(str(name), MAX_NAME_CHARS) if name else f"#{connection.get('id')} (deleted)"


def slack_text(kind: str, detail: dict[str, Any], base_url: str) -> str:
    """One or two lines a person reads in a channel."""
    name = _connection_name(detail)
    if kind == "disabled":
        reason = shown_text(str(detail.get("reason") or "too many failed jobs in a row"), MAX_SHOWN_CHARS)
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
            f"\n{shown_text(str(failure.get('origin')), 40)} {shown_text(str(failure.get('type')), 40)}: "
            f"{_first_line(str(failure.get('message')))}"
        )
    link = f"\n{job_link(base_url, int(job['id']))}" if job.get("id") is not None else ""
    return head + reason + link


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _first_line(text: str) -> str:
    """The first line, escaped and cut at MAX_SHOWN_CHARS: a connector's message may be one line
    of 50,000 characters (an API's error body), and chat tools refuse a long text (Discord's
    ``/slack`` over 2,000 characters) with a 400, so the failure would be told to nobody."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    return shown_text(lines[0], MAX_SHOWN_CHARS) + (" [...]" if len(lines) > 1 else "")


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
