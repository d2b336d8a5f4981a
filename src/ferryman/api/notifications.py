"""``/v1/ferryman/notifications``: the webhooks told when syncs fail (or succeed, or are cancelled,
when asked) and when a connection is disabled. See docs/notifications.md.

A webhook's URL may hold a token (Slack's do): responses show its scheme and host only."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from ferryman.api.context import Context, Limit, Offset, not_found, page
from ferryman.api.documents import iso, omit_nulls
from ferryman.api.models import Notification, NotificationPage, ok
from ferryman.notifications.payloads import shown_url
from ferryman.store.base import NotFound, Webhook

router = APIRouter(prefix="/ferryman/notifications", tags=["ferryman"])
EventKind = Literal["failure", "success", "cancelled", "disabled"]


class NotificationCreate(BaseModel):
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://")
    format: Literal["slack", "json"] = "slack"
    events: list[EventKind] = Field(default=["failure", "disabled"], min_length=1)
    connectionId: UUID | None = None  # None: every connection of the workspace


def notification_doc(context: Context, hook: Webhook) -> dict[str, Any]:
    connection = None
    if hook.connection_id is not None:
        try:
            connection = context.store.get_connection_by_id(hook.connection_id, catalog=False).uuid
        except NotFound:
            connection = None
    return omit_nulls(
        {
            "notificationId": hook.uuid,
            "url": shown_url(hook.url),
            "format": hook.format,
            "events": list(hook.events),
            "workspaceId": hook.workspace_uuid,
            "connectionId": connection,
            "createdAt": iso(hook.created_at),
        }
    )


def _hook(context: Context, ident: UUID) -> Webhook:
    try:
        return context.store.get_webhook(str(ident))
    except NotFound:
        raise not_found("notification", str(ident)) from None


@router.get("", **ok(NotificationPage))
def list_notifications(
    request: Request, context: Context, limit: Limit = 20, offset: Offset = 0
) -> dict[str, Any]:
    hooks = context.store.list_webhooks()
    return page(request, hooks, limit, offset, lambda hook: notification_doc(context, hook))


@router.post("", **ok(Notification))
def create_notification(body: NotificationCreate, context: Context) -> dict[str, Any]:
    """A webhook for one connection (``connectionId``) or every connection of the workspace."""
    connection_id = None
    if body.connectionId is not None:
        try:
            connection_id = context.store.get_connection_by_uuid(str(body.connectionId), catalog=False).id
        except NotFound:
            raise not_found("connection", str(body.connectionId)) from None
    hook = context.store.add_webhook(body.url, body.format, body.events, connection_id)
    return notification_doc(context, hook)


@router.get("/{notificationId}", **ok(Notification))
def get_notification(notificationId: UUID, context: Context) -> dict[str, Any]:
    return notification_doc(context, _hook(context, notificationId))


@router.delete("/{notificationId}", status_code=204, response_class=Response)
def delete_notification(notificationId: UUID, context: Context) -> Response:
    """Remove the webhook; its events not yet delivered are dropped."""
    context.store.delete_webhook(_hook(context, notificationId).uuid)
    return Response(status_code=204)
