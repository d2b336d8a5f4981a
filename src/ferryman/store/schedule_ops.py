"""What the scheduler reads and writes: due connections, their next run, failure streaks, and
disabling a connection. Each is one statement, so a pass over thousands of connections costs a
few queries plus one insert per job it creates.

Jobs name their connection by ``scope`` = the connection id as text; the queries join on it, which
the indexes on ``jobs.scope`` (plain, live-partial, with ``updated_at``) serve.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection as SqlConnection

from ferryman.jobs.states import JobStatus, JobType
from ferryman.store import rows
from ferryman.store.base import Connection, DueRun, FailureStreak, Job, ScheduledJob
from ferryman.store.db import Database
from ferryman.store.notify_ops import write_events
from ferryman.store.schema import (
    CONNECTION_BUT_CATALOG,
    LIVE_STATUSES,
    REPLICATION_TYPES,
    UtcDateTime,
    connections,
    jobs,
)

ACTIVE = "active"
INACTIVE = "inactive"
# Ids per IN (...) list: far below SQLite's limit on bound parameters.
_CHUNK = 500


def _scope_of(table: Any) -> sa.ColumnElement[Any]:
    return sa.cast(table.c.id, sa.String(255))


class ScheduleOps:
    _db: Database

    def due_runs(self, now: datetime, limit: int, after: tuple[datetime, int] | None = None) -> list[DueRun]:
        # NOT IN over the live jobs, not NOT EXISTS: the database hashes the live scopes once,
        # whatever it believes about the size of the jobs table (a NOT EXISTS planned on stale
        # statistics scanned the jobs table once per connection).
        live_scopes = sa.select(jobs.c.scope).where(
            jobs.c.scope.is_not(None),
            jobs.c.type.in_(REPLICATION_TYPES),
            jobs.c.status.in_(LIVE_STATUSES),
        )
        query = (
            sa.select(connections)
            .where(
                connections.c.status == ACTIVE,
                connections.c.next_run_at <= now,
                _scope_of(connections).not_in(live_scopes),
            )
            .order_by(connections.c.next_run_at, connections.c.id)
            .limit(limit)
        )
        if after is not None:
            moment, last_id = after
            at = sa.literal(moment, UtcDateTime())
            query = query.where(
                sa.or_(
                    connections.c.next_run_at > at,
                    sa.and_(connections.c.next_run_at == at, connections.c.id > last_id),
                )
            )
        with self._db.read() as conn:
            due = [rows.connection(row) for row in conn.execute(query)]
            if not due:
                return []
            ended, failed = self._last_jobs(conn, [str(c.id) for c in due])
        return [DueRun(c, ended.get(str(c.id)), str(c.id) in failed) for c in due]

    def _last_jobs(self, conn: SqlConnection, scopes: list[str]) -> tuple[dict[str, datetime], set[str]]:
        """When each scope's last sync/reset ended, and the scopes whose newest sync failed."""
        last_sync = sa.func.max(sa.case((jobs.c.type == JobType.SYNC.value, jobs.c.id)))
        found = conn.execute(
            sa.select(jobs.c.scope, sa.type_coerce(sa.func.max(jobs.c.updated_at), UtcDateTime()), last_sync)
            .where(jobs.c.scope.in_(scopes), jobs.c.type.in_(REPLICATION_TYPES))
            .group_by(jobs.c.scope)
        ).all()
        ended = {scope: moment for scope, moment, _ in found}
        newest = [job_id for _, _, job_id in found if job_id is not None]
        failed = set(
            conn.execute(
                sa.select(jobs.c.scope).where(jobs.c.id.in_(newest), jobs.c.status == JobStatus.FAILED.value)
            ).scalars()
        )
        return ended, failed

    def unplanned_connections(self) -> list[Connection]:
        query = (
            sa.select(*CONNECTION_BUT_CATALOG)
            .where(
                connections.c.status == ACTIVE,
                connections.c.next_run_at.is_(None),
                connections.c.schedule.is_not(None),
            )
            .order_by(connections.c.id)
        )
        with self._db.read() as conn:
            found = [rows.connection(row) for row in conn.execute(query)]
        return [c for c in found if (c.schedule or {}).get("scheduleType", "manual") != "manual"]

    def planned_connections(self) -> list[Connection]:
        query = (
            sa.select(*CONNECTION_BUT_CATALOG)
            .where(connections.c.status == ACTIVE, connections.c.next_run_at.is_not(None))
            .order_by(connections.c.id)
        )
        with self._db.read() as conn:
            return [rows.connection(row) for row in conn.execute(query)]

    def set_next_run(self, connection_id: int, seen: datetime | None, next_run_at: datetime | None) -> bool:
        current = (
            connections.c.next_run_at.is_(None)
            if seen is None
            else connections.c.next_run_at == sa.literal(seen, UtcDateTime())
        )
        with self._db.write() as conn:
            result = conn.execute(
                connections.update()
                .where(connections.c.id == connection_id, current)
                .values(next_run_at=next_run_at)
            )
        return bool(result.rowcount)

    def enqueue_scheduled(self, runs: list[ScheduledJob]) -> list[Job | None]:
        """Three statements for all the runs, in one transaction (a pass is bound by round trips
        and commits, a Postgres commit waiting for its WAL flush):

        1. insert the jobs, ``ON CONFLICT DO NOTHING``: a unique index skips a run that has its
           job already, or whose connection has a live one (a concurrent scheduler's uncommitted
           insert of the same run makes this one wait for it, then skip);
        2. move each inserted run's ``next_run_at`` from the value read (compare-and-set);
        3. delete the jobs whose connection had moved meanwhile (re-planned, disabled, deleted).
        """
        if not runs:
            return []
        by_scope = {str(run.connection_id): run for run in runs}
        values = [
            {
                "type": JobType.SYNC.value,
                "scope": scope,
                "config": run.config,
                "status": JobStatus.PENDING.value,
                "created_at": run.created_at,
                "updated_at": run.created_at,
                "cancel_requested": False,
                "scheduled_for": run.scheduled_for,
            }
            for scope, run in by_scope.items()
        ]
        with self._db.write() as conn:
            insert = self._db.insert(jobs).values(values).on_conflict_do_nothing().returning(*jobs.c)
            made = {row.scope: rows.job(row) for row in conn.execute(insert)}
            moved = self._move_next_runs(conn, [by_scope[scope] for scope in made])
            stale = [job.id for scope, job in made.items() if by_scope[scope].connection_id not in moved]
            if stale:
                conn.execute(jobs.delete().where(jobs.c.id.in_(stale)))
        return [made.get(str(run.connection_id)) if run.connection_id in moved else None for run in runs]

    def _move_next_runs(self, conn: SqlConnection, runs: list[ScheduledJob]) -> set[int]:
        """Compare-and-set each run's ``next_run_at`` (one UPDATE); the ids it moved."""
        if not runs:
            return set()
        seen = sa.tuple_(connections.c.id, connections.c.next_run_at).in_(
            [sa.tuple_(sa.literal(r.connection_id), sa.literal(r.seen_next_run, UtcDateTime())) for r in runs]
        )
        upcoming = sa.case(
            {r.connection_id: sa.literal(r.next_run_at, UtcDateTime()) for r in runs},
            value=connections.c.id,
        )
        moved = conn.execute(
            connections.update()
            .where(connections.c.status == ACTIVE, seen)
            .values(next_run_at=upcoming)
            .returning(connections.c.id)
        )
        return set(moved.scalars())

    def failure_streaks(self, connection_ids: Collection[int]) -> dict[int, FailureStreak]:
        ids = sorted(set(connection_ids))
        found: dict[int, FailureStreak] = {}
        for start in range(0, len(ids), _CHUNK):
            found.update(self._streaks(ids[start : start + _CHUNK]))
        return found

    def _streaks(self, ids: list[int]) -> dict[int, FailureStreak]:
        later = jobs.alias("later")
        succeeded_after = sa.exists().where(
            later.c.scope == jobs.c.scope,
            later.c.type == JobType.SYNC.value,
            later.c.status == JobStatus.SUCCEEDED.value,
            later.c.id > jobs.c.id,
        )
        query = (
            sa.select(
                connections.c.id,
                sa.func.count().label("failures"),
                sa.type_coerce(sa.func.min(jobs.c.created_at), UtcDateTime()).label("first_failed_at"),
                sa.func.max(jobs.c.id).label("last_job_id"),
            )
            .select_from(connections.join(jobs, jobs.c.scope == _scope_of(connections)))
            .where(
                connections.c.id.in_(ids),
                jobs.c.type == JobType.SYNC.value,
                jobs.c.status == JobStatus.FAILED.value,
                sa.or_(connections.c.active_since.is_(None), jobs.c.created_at >= connections.c.active_since),
                sa.not_(succeeded_after),
            )
            .group_by(connections.c.id)
        )
        with self._db.read() as conn:
            return {
                row.id: FailureStreak(row.id, row.failures, row.first_failed_at, row.last_job_id)
                for row in conn.execute(query)
            }

    def disable_connection(
        self, connection_id: int, reason: str, job_id: int | None = None, now: datetime | None = None
    ) -> Connection | None:
        with self._db.write() as conn:
            row = conn.execute(
                connections.update()
                .where(connections.c.id == connection_id, connections.c.status == ACTIVE)
                .values(status=INACTIVE, status_reason=reason, next_run_at=None)
                .returning(*connections.c)
            ).first()
            if row is not None:  # the webhooks hear of it in the transaction that disables it
                last = None
                if job_id is not None:
                    found = conn.execute(jobs.select().where(jobs.c.id == job_id)).first()
                    last = None if found is None else rows.job(found)
                write_events(conn, "disabled", connection_id, last, {"reason": reason}, now or rows.utcnow())
        return None if row is None else rows.connection(row)
