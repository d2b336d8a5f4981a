"""Notifications in the store: webhooks, and the outbox their events wait in.

A transactional outbox. When a sync or reset job reaches a terminal status, :func:`job_ended`
runs inside the compare-and-set transaction that moved it (``job_ops.move_job``) and writes one
``notification_events`` row per webhook that wants the event: the job's end and its notice
commit together, whatever process or engine ended the job, and a job that ends once is told
once (the transition happens once; a unique key on webhook, kind and job stands guard as well).

Which ends are told: ``failed`` to webhooks with ``failure``, ``succeeded`` to those that opted
into ``success``, ``cancelled`` to those that opted into ``cancelled`` (someone chose to stop the
job; by default nobody is told). ``disabled`` comes from :meth:`NotifyOps.record_event`.

An event's ``detail`` is built from rows the engines stored masked already (failure messages,
counts, names); dispatchers mask it once more with the job's secrets before sending.

A connection's own webhooks go with it, but not the events they still owe: a job that failed just
before its connection was deleted is still told (:func:`retire_webhooks`). Such a webhook stays,
hidden, detached and wanting no new event (``events`` empty, which no user can set), until its last
event has been delivered or given up on.

Dispatchers claim due rows in one statement (Postgres: the rows are picked ``FOR UPDATE SKIP
LOCKED``; SQLite: one ``BEGIN IMMEDIATE`` writer at a time) by moving ``next_attempt_at`` ahead by
a lease and stamping ``claimed_by``; the outcome of a try is written only while that claim holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection as SqlConnection

from ferryman.errors import UserInputError
from ferryman.jobs.configs import ConfigDocumentError
from ferryman.jobs.failures import most_specific_message
from ferryman.jobs.outcomes import failure_summary
from ferryman.jobs.states import JobStatus
from ferryman.store import rows
from ferryman.store.base import Job, NotFound, NotificationEvent, Webhook
from ferryman.store.db import Database, sql_now
from ferryman.store.schema import (
    attempts,
    connections,
    jobs,
    notification_events,
    stream_stats,
    webhooks,
    workspaces,
)

EVENT_KINDS = ("failure", "success", "cancelled", "disabled")
DEFAULT_EVENTS = ("failure", "disabled")
FORMATS = ("slack", "json")
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_KIND_OF_END = {JobStatus.FAILED: "failure", JobStatus.SUCCEEDED: "success", JobStatus.CANCELLED: "cancelled"}


def check_events(events: Collection[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(e.strip().lower() for e in events if e.strip()))
    unknown = [e for e in chosen if e not in EVENT_KINDS]
    if unknown or not chosen:
        raise UserInputError(
            f"unknown event {', '.join(unknown) or '(none)'}: choose from {', '.join(EVENT_KINDS)}"
        )
    return chosen


def check_webhook(url: str, format: str) -> None:
    if not url.startswith(("http://", "https://")) or len(url) < len("http://x"):
        raise UserInputError("a webhook URL starts with http:// or https://")
    # Checked here, not at the first post: a URL the dispatcher cannot read failed every pass. The
    # messages never quote the URL: it may hold a token, or a password in place of the port.
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a port that is not a number up to 65535, an unclosed "[" of an IPv6 host
        port_ok = False
    if not port_ok:
        raise UserInputError(
            "invalid webhook URL: its host or port cannot be read (a port is a number from 1 to "
            "65535); give it as http(s)://host[:port]/path"
        )
    if not parts.hostname or any(c.isspace() or not c.isprintable() for c in url):
        raise UserInputError(
            "invalid webhook URL: it has no host, or a space or control character in it; give it "
            "as http(s)://host[:port]/path, with %20 for a space"
        )
    if format not in FORMATS:
        raise UserInputError(f"unknown format {format!r}: choose from {', '.join(FORMATS)}")


def _webhook(row: Any) -> Webhook:
    return Webhook(
        id=row.id,
        uuid=row.uuid,
        workspace_uuid=row.workspace_uuid,
        connection_id=row.connection_id,
        url=row.url,
        format=row.format,
        events=tuple(row.events or ()),
        created_at=row.created_at,
    )


def _event(row: Any) -> NotificationEvent:
    return NotificationEvent(
        id=row.id,
        webhook_id=row.webhook_id,
        kind=row.kind,
        connection_id=row.connection_id,
        job_id=row.job_id,
        detail=dict(row.detail or {}),
        status=row.status,
        tries=row.tries,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        ended_at=row.ended_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        claimed_by=row.claimed_by,
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# -- what an event tells, read in the transaction that writes it --------------------------------


def _connection_detail(conn: SqlConnection, connection_id: int) -> dict[str, Any]:
    row = conn.execute(
        sa.select(connections.c.id, connections.c.uuid, connections.c.name).where(
            connections.c.id == connection_id
        )
    ).first()
    if row is None:
        return {"id": connection_id, "uuid": None, "name": None}
    return {"id": row.id, "uuid": row.uuid, "name": row.name}


def _failure(document: dict[str, Any] | None) -> dict[str, Any] | None:
    try:
        failures = failure_summary(document).failures
    except ConfigDocumentError:  # a document of a newer version, or a damaged one
        return None
    if not failures:
        return None
    first = failures[0]  # the engines store them ordered: the one that decided comes first
    message = most_specific_message(first.message, first.internal_message, first.stack_trace)
    return {
        "message": message,
        "type": first.type.value,
        "origin": first.origin.value,
        "stream": first.stream,
    }


def _job_detail(conn: SqlConnection, job: Job, ended_at: datetime | None) -> dict[str, Any]:
    tried = conn.execute(
        sa.select(attempts.c.id, attempts.c.failure_summary)
        .where(attempts.c.job_id == job.id)
        .order_by(attempts.c.number)
    ).all()
    committed = conn.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(stream_stats.c.records_committed), 0),
            sa.func.coalesce(sa.func.sum(stream_stats.c.bytes_committed), 0),
        )
        .select_from(stream_stats.join(attempts, stream_stats.c.attempt_id == attempts.c.id))
        .where(attempts.c.job_id == job.id)
    ).one()
    failed = [row.failure_summary for row in tried if row.failure_summary]
    return {
        "job": {
            "id": job.id,
            "type": job.type.value,
            "status": job.status.value,
            "attempts": len(tried),
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "ended_at": _iso(ended_at),
        },
        "records_committed": int(committed[0]),
        "bytes_committed": int(committed[1]),
        "failure": _failure(failed[-1]) if failed and job.status is not JobStatus.SUCCEEDED else None,
    }


def _wanting(conn: SqlConnection, kind: str, connection_id: int) -> list[Webhook]:
    query = sa.select(webhooks).where(
        sa.or_(webhooks.c.connection_id.is_(None), webhooks.c.connection_id == connection_id)
    )
    return [hook for hook in map(_webhook, conn.execute(query)) if kind in hook.events]


def _insert(conn: SqlConnection) -> Any:
    """An INSERT into the outbox that can skip a duplicate, on either database."""
    if conn.dialect.name == "sqlite":
        return sqlite_insert(notification_events)
    from sqlalchemy.dialects.postgresql import insert as pg_insert  # not on SQLite: ~20 ms

    return pg_insert(notification_events)


def write_events(
    conn: SqlConnection,
    kind: str,
    connection_id: int,
    job: Job | None,
    extra: dict[str, Any] | None,
    now: datetime,
) -> int:
    """One outbox row per webhook that wants ``kind`` for this connection, in ``conn``'s
    transaction; how many it wrote (none when nobody listens)."""
    hooks = _wanting(conn, kind, connection_id)
    if not hooks:
        return 0
    detail: dict[str, Any] = {"connection": _connection_detail(conn, connection_id)}
    if job is not None:
        detail.update(_job_detail(conn, job, now if job.status.terminal else None))
    detail.update(extra or {})
    written = 0
    for hook in hooks:
        statement = (
            _insert(conn)
            .values(
                webhook_id=hook.id,
                kind=kind,
                connection_id=connection_id,
                job_id=None if job is None else job.id,
                detail=detail,
                status=PENDING,
                tries=0,
                next_attempt_at=sql_now(conn.dialect.name == "sqlite"),  # due at once, by the store's clock
                created_at=now,
            )
            .on_conflict_do_nothing()
            .returning(notification_events.c.id)
        )
        written += len(conn.execute(statement).all())  # none when the event was there already
    return written


def retire_webhooks(conn: SqlConnection, connection_id: int) -> None:
    """In the transaction that deletes the connection, before the delete: its webhooks that owe
    an event are kept, detached and retired (they want no new event); the others are removed."""
    hooks = set(
        conn.execute(sa.select(webhooks.c.id).where(webhooks.c.connection_id == connection_id)).scalars()
    )
    if not hooks:
        return
    conn.execute(webhooks.update().where(webhooks.c.id.in_(hooks)).values(connection_id=None, events=[]))
    _drop_if_done(conn, hooks)


def _drop_if_done(conn: SqlConnection, hooks: Collection[int]) -> None:
    """Remove those of these retired webhooks that owe no event any more."""
    lock = sa.select(webhooks.c.id).where(webhooks.c.id.in_(hooks))
    if conn.dialect.name != "sqlite":
        # Waits for a job's end that is writing an event for one of them (its insert holds a key
        # share lock on the webhook row): the next statement sees that event, and keeps its webhook.
        lock = lock.with_for_update()
    conn.execute(lock).all()
    owing = set(
        conn.execute(
            sa.select(notification_events.c.webhook_id).where(
                notification_events.c.webhook_id.in_(hooks), notification_events.c.status == PENDING
            )
        ).scalars()
    )
    done = set(hooks) - owing
    if done:
        conn.execute(webhooks.delete().where(webhooks.c.id.in_(done)))


def job_ended(conn: SqlConnection, job: Job, now: datetime) -> int:
    """Called by ``move_job`` in the transaction that moved ``job`` to a terminal status."""
    kind = _KIND_OF_END.get(job.status)
    if kind is None or not job.type.is_replication or not (job.scope or "").isdigit():
        return 0
    return write_events(conn, kind, int(job.scope or 0), job, None, now)


# -- the operations ------------------------------------------------------------------------------


class NotifyOps:
    _db: Database

    def add_webhook(
        self, url: str, format: str, events: Collection[str], connection_id: int | None = None
    ) -> Webhook:
        url = url.strip()
        check_webhook(url, format)
        chosen = check_events(events)
        with self._db.write() as conn:
            workspace = conn.execute(sa.select(workspaces.c.uuid).order_by(workspaces.c.created_at)).scalar()
            if connection_id is not None and _connection_detail(conn, connection_id)["uuid"] is None:
                raise NotFound(f"no connection with id {connection_id}")
            row = conn.execute(
                webhooks.insert()
                .values(
                    uuid=str(uuid.uuid4()),
                    workspace_uuid=workspace,
                    connection_id=connection_id,
                    url=url,
                    format=format,
                    events=list(chosen),
                    created_at=rows.utcnow(),
                )
                .returning(*webhooks.c)
            ).one()
        return _webhook(row)

    def list_webhooks(self, retired: bool = False) -> list[Webhook]:
        """The webhooks users set; ``retired`` adds those retired with their connection that still
        owe an event (see the module)."""
        with self._db.read() as conn:
            found = [_webhook(row) for row in conn.execute(sa.select(webhooks).order_by(webhooks.c.id))]
        return [hook for hook in found if hook.events or retired]

    def get_webhook(self, ident: str) -> Webhook:
        text = ident.strip().lower()
        found = [hook for hook in self.list_webhooks() if text and hook.uuid.startswith(text)]
        if len(found) != 1:
            what = "no" if not found else "more than one"
            raise NotFound(f"{what} notification webhook with id {ident}")
        return found[0]

    def delete_webhook(self, ident: str) -> Webhook:
        hook = self.get_webhook(ident)
        with self._db.write() as conn:
            conn.execute(webhooks.delete().where(webhooks.c.id == hook.id))
        return hook

    def record_event(
        self,
        kind: str,
        connection_id: int,
        job_id: int | None = None,
        detail: dict[str, Any] | None = None,
        now: datetime | None = None,
    ) -> int:
        (kind,) = check_events([kind])
        moment = now or rows.utcnow()
        with self._db.write() as conn:
            job = None
            if job_id is not None:
                found = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
                job = None if found is None else rows.job(found)
            return write_events(conn, kind, connection_id, job, detail, moment)

    def claim_events(
        self, dispatcher_id: str, lease_s: float, limit: int
    ) -> list[tuple[NotificationEvent, Webhook]]:
        if limit <= 0:
            return []
        # Due, and the lease, by the store's clock: a dispatcher on a host whose clock runs ahead
        # must not take over another's claim early (and post its event twice).
        due = sa.and_(
            notification_events.c.status == PENDING, notification_events.c.next_attempt_at <= self._db.now()
        )
        pick = (
            sa.select(notification_events.c.id)
            .where(due)
            .order_by(notification_events.c.next_attempt_at, notification_events.c.id)
            .limit(limit)
        )
        if not self._db.is_sqlite:  # rows another dispatcher is claiming are skipped, not waited for
            pick = pick.with_for_update(skip_locked=True)
        # Two statements in one transaction, not UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR
        # UPDATE SKIP LOCKED): Postgres may run such a subquery again for each row, and each run,
        # skipping the rows the statement has just updated, hands out n more.
        with self._db.write() as conn:  # SQLite: BEGIN IMMEDIATE, one claimer at a time
            picked = list(conn.execute(pick).scalars())
            if not picked:
                return []
            claim = (
                notification_events.update()
                .where(notification_events.c.id.in_(picked), due)
                .values(claimed_by=dispatcher_id, next_attempt_at=self._db.now(after_s=lease_s))
                .returning(*notification_events.c)
            )
            claimed = [_event(row) for row in conn.execute(claim)]
            ids = {event.webhook_id for event in claimed}
            hooks = {
                row.id: _webhook(row)
                for row in conn.execute(sa.select(webhooks).where(webhooks.c.id.in_(ids)))
            }
        return sorted(
            ((e, hooks[e.webhook_id]) for e in claimed if e.webhook_id in hooks), key=lambda p: p[0].id
        )

    def end_event_try(
        self,
        event_id: int,
        dispatcher_id: str,
        now: datetime,
        status: str,
        retry_in_s: float | None,
        status_code: int | None,
        error: str | None,
    ) -> bool:
        values: dict[str, Any] = {
            "status": status,
            "tries": notification_events.c.tries + 1,
            "last_status_code": status_code,
            "last_error": error,
        }
        if status == PENDING:
            values["next_attempt_at"] = self._db.now(after_s=retry_in_s or 0.0)
        else:
            values["ended_at"] = now
        with self._db.write() as conn:
            result = conn.execute(
                notification_events.update()
                .where(
                    notification_events.c.id == event_id,
                    notification_events.c.status == PENDING,
                    notification_events.c.claimed_by == dispatcher_id,
                )
                .values(**values)
                .returning(notification_events.c.webhook_id)
            )
            ended = result.scalars().all()
            if ended and status != PENDING:
                retired = conn.execute(
                    sa.select(webhooks.c.id, webhooks.c.events).where(webhooks.c.id.in_(ended))
                ).all()
                if any(not row.events for row in retired):  # its connection's deletion left it owing
                    _drop_if_done(conn, [row.id for row in retired if not row.events])
        return bool(ended)

    def list_events(self, limit: int = 50) -> list[NotificationEvent]:
        query = sa.select(notification_events).order_by(notification_events.c.id.desc()).limit(limit)
        with self._db.read() as conn:
            return [_event(row) for row in conn.execute(query)]
