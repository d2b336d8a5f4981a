"""``ferryman notifications ...``: webhooks told when syncs fail (or succeed, when asked) and when
a connection is disabled; see docs/notifications.md.

A webhook's URL may hold a token (Slack's do): it is shown as scheme and host only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ferryman.cli.common import JsonOption, guarded, print_json, say, when
from ferryman.cli.context import job_service

if TYPE_CHECKING:
    from ferryman.store.base import JobStore, NotificationEvent, Webhook

app = typer.Typer(
    help="Webhooks told when a sync fails (or succeeds, if asked) and when a connection is disabled.",
    no_args_is_help=True,
)


def _connection_names(store: JobStore) -> dict[int, str]:
    return {c.id: c.name for c in store.connection_labels()}


def webhook_doc(hook: Webhook, names: dict[int, str]) -> dict[str, Any]:
    from ferryman.notifications.payloads import shown_url

    return {
        "id": hook.uuid,
        "url": shown_url(hook.url),
        "format": hook.format,
        "events": list(hook.events),
        "connection": None if hook.connection_id is None else names.get(hook.connection_id),
        "created_at": hook.created_at,
    }


def event_doc(event: NotificationEvent, hooks: dict[int, str]) -> dict[str, Any]:
    return {
        "id": event.id,
        "webhook": hooks.get(event.webhook_id),
        "kind": event.kind,
        "job_id": event.job_id,
        "status": event.status,
        "tries": event.tries,
        "last_status_code": event.last_status_code,
        "last_error": event.last_error,
        "created_at": event.created_at,
        "next_attempt_at": event.next_attempt_at if event.status == "pending" else None,
        "ended_at": event.ended_at,
    }


@app.command("add")
def add(
    url: Annotated[str, typer.Option("--url", help="Where to POST (http:// or https://).")],
    format: Annotated[
        str, typer.Option("--format", help='slack ({"text": ...}) or json (every field).')
    ] = "slack",
    on: Annotated[
        str,
        typer.Option("--on", help="Comma-separated events: failure, success, cancelled, disabled."),
    ] = "failure,disabled",
    connection: Annotated[
        str | None,
        typer.Option("--connection", help="Only this connection (name or id); default: every connection."),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Add a webhook, for one connection or every connection of the workspace."""

    def action() -> int:
        with job_service() as service:
            store = service.store
            connection_id = None if connection is None else store.get_connection(connection).id
            hook = store.add_webhook(url, format.strip().lower(), on.split(","), connection_id)
            doc = webhook_doc(hook, _connection_names(store))
        if json:
            print_json(doc, [])
        else:
            scope = f"connection {doc['connection']}" if connection else "every connection"
            say(f"webhook {hook.uuid}: {', '.join(hook.events)} of {scope} to {doc['url']} ({hook.format})")
        return 0

    guarded(action)


@app.command("list")
def list_webhooks(json: JsonOption = False) -> None:
    """The webhooks (their URLs as scheme and host only)."""

    def action() -> int:
        with job_service() as service:
            names = _connection_names(service.store)
            docs = [webhook_doc(h, names) for h in service.store.list_webhooks()]
        if json:
            print_json(docs, [])
        for doc in [] if json else docs:
            scope = doc["connection"] or "(every connection)"
            say(f"{doc['id']}  {doc['format']:<5}  {','.join(doc['events']):<32} {scope:<24} {doc['url']}")
        return 0

    guarded(action)


@app.command("remove")
def remove(
    webhook: Annotated[str, typer.Argument(help="Its id (or the start of it, as `list` shows).")],
    json: JsonOption = False,
) -> None:
    """Remove a webhook; its events not yet delivered are dropped."""

    def action() -> int:
        with job_service() as service:
            hook = service.store.delete_webhook(webhook)
        if json:
            print_json({"id": hook.uuid, "removed": True}, [])
        else:
            say(f"webhook {hook.uuid} removed")
        return 0

    guarded(action)


@app.command("events")
def events(
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many, newest first.")] = 20,
    json: JsonOption = False,
) -> None:
    """Recent notification events: delivered, waiting for their next try, or given up."""

    def action() -> int:
        with job_service() as service:
            # A webhook retired with its deleted connection still delivers what it owes: name it.
            hooks = {h.id: h.uuid for h in service.store.list_webhooks(retired=True)}
            docs = [event_doc(e, hooks) for e in service.store.list_events(limit)]
        if json:
            print_json(docs, [])
        for doc in [] if json else docs:
            job = f"job {doc['job_id']}" if doc["job_id"] else "-"
            code = doc["last_status_code"] or ""
            why = f"  {doc['last_error']}" if doc["last_error"] else ""
            say(
                f"{doc['id']:>6}  {when(doc['created_at'], short=True)}  {doc['kind']:<9} {job:<10} "
                f"{doc['status']:<9} tries {doc['tries']} {code}{why}"
            )
        return 0

    guarded(action)
