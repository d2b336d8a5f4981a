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
from sqlalchemy.exc import IntegrityError

from ferryman.jobs.states import JobStatus, JobType
from ferryman.store import rows
from ferryman.store.base import Connection, DueRun, FailureStreak, Job, ScheduledJob
from ferryman.store.db import Database
from ferryman.store.schema import LIVE_STATUSES, REPLICATION_TYPES, UtcDateTime, connections, jobs

ACTIVE = "active"
INACTIVE = "inactive"
# Ids per IN (...) list: far below SQLite's limit on bound parameters.
_CHUNK = 500


def _scope_of(table: Any) -> sa.ColumnElement[Any]:
    return sa.cast(table.c.id, sa.String(255))


class ScheduleOps:
    _db: Database

    def due_runs(self, now: datetime, limit: int, after: tuple[datetime, int] | None = None) -> list[DueRun]:
        scope = _scope_of(connections)
        live = sa.exists().where(
            jobs.c.scope == scope,
            jobs.c.type.in_(REPLICATION_TYPES),
            jobs.c.status.in_(LIVE_STATUSES),
        )
        last_ended = (
            sa.select(sa.func.max(jobs.c.updated_at))
            .where(jobs.c.scope == scope, jobs.c.type.in_(REPLICATION_TYPES))
            .scalar_subquery()
        )
        query = (
            sa.select(connections, sa.type_coerce(last_ended, UtcDateTime()).label("last_ended_at"))
            .where(
                connections.c.status == ACTIVE,
                connections.c.next_run_at <= now,
                sa.not_(live),
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
            return [DueRun(rows.connection(row), row.last_ended_at) for row in conn.execute(query)]

    def unplanned_connections(self) -> list[Connection]:
        query = (
            sa.select(connections)
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
        made: list[Job | None] = []
        with self._db.write() as conn:  # one commit for all: a pass is bound by commits
            for run in runs:
                made.append(self._enqueue_one(conn, run))
        return made

    def _enqueue_one(self, conn: SqlConnection, run: ScheduledJob) -> Job | None:
        """Under a savepoint: move the connection's next run (compare-and-set: a scheduler that
        read the same due run waits on the row lock, then finds it moved), then insert the job;
        the unique indexes refuse a second job for the run, or one beside a live job."""
        scope = str(run.connection_id)
        try:
            with conn.begin_nested():
                if not self._move_next_run(conn, run):
                    return None
                values = {
                    "type": JobType.SYNC.value,
                    "scope": scope,
                    "config": run.config,
                    "status": JobStatus.PENDING.value,
                    "created_at": run.created_at,
                    "updated_at": run.created_at,
                    "cancel_requested": False,
                    "scheduled_for": run.scheduled_for,
                }
                return rows.job(conn.execute(jobs.insert().values(**values).returning(*jobs.c)).one())
        except IntegrityError:
            made = conn.execute(
                sa.select(jobs.c.id).where(jobs.c.scope == scope, jobs.c.scheduled_for == run.scheduled_for)
            ).first()
            if made is not None:  # another scheduler made it and died before moving next_run_at
                self._move_next_run(conn, run)
            return None

    def _move_next_run(self, conn: SqlConnection, run: ScheduledJob) -> bool:
        moved = conn.execute(
            connections.update()
            .where(
                connections.c.id == run.connection_id,
                connections.c.status == ACTIVE,
                connections.c.next_run_at == sa.literal(run.seen_next_run, UtcDateTime()),
            )
            .values(next_run_at=run.next_run_at)
        )
        return bool(moved.rowcount)

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

    def disable_connection(self, connection_id: int, reason: str) -> Connection | None:
        with self._db.write() as conn:
            row = conn.execute(
                connections.update()
                .where(connections.c.id == connection_id, connections.c.status == ACTIVE)
                .values(status=INACTIVE, status_reason=reason, next_run_at=None)
                .returning(*connections.c)
            ).first()
        return None if row is None else rows.connection(row)
