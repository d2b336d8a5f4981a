"""The store on SQLAlchemy Core: SQLite by default, Postgres when many engines share one."""

from __future__ import annotations

import sqlalchemy as sa

from ferryman.store import migrate, notify_ops, rows
from ferryman.store.api_ops import ApiOps
from ferryman.store.base import JobStore, NotFound
from ferryman.store.config_ops import ConfigOps, _by_id
from ferryman.store.db import Database, parse_url
from ferryman.store.engine_ops import EngineOps
from ferryman.store.job_ops import JobOps, cancel_in
from ferryman.store.notify_ops import NotifyOps
from ferryman.store.schedule_ops import ScheduleOps
from ferryman.store.schema import LIVE_STATUSES, REPLICATION_TYPES, connections, jobs
from ferryman.store.tallies import TallyOps


class SqlJobStore(ConfigOps, JobOps, ApiOps, NotifyOps, TallyOps, ScheduleOps, EngineOps):
    """:class:`~ferryman.store.base.JobStore` on one database. Safe to share between threads;
    any number of processes may open the same database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    def open(cls, url: str, migrate_schema: bool = True) -> SqlJobStore:
        """A store on ``url``, migrated to the newest schema first unless told otherwise."""
        db = Database(parse_url(url))
        if migrate_schema:
            try:
                migrate.upgrade(db)
            except BaseException:
                db.dispose()
                raise
        return cls(db)

    @property
    def url(self) -> str:
        return self._db.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self._db.dialect

    @property
    def engine(self) -> sa.Engine:
        return self._db.engine

    def close(self) -> None:
        self._db.dispose()

    def __enter__(self) -> SqlJobStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def delete_connection(self, connection_id: int) -> None:
        """Delete the connection with this id and its state; its live sync/reset job is cancelled
        (a running one is flagged, and its engine stops it), as Airbyte does on delete.

        One transaction: a job made meanwhile (a scheduler's pass, a sync asked for through the
        API) is either seen here and cancelled, or made after the delete and dropped by the
        scheduler (its next run's compare-and-set finds no row). Read first and deleted later,
        such a job ran for a connection that no longer existed, writing to its destination."""
        now = rows.utcnow()
        with self._db.write() as conn:  # its id only: its catalog may be megabytes
            row = _by_id(conn, connections, connection_id, columns=[connections.c.id])
            if row is None:
                raise NotFound(f"no connection with id {connection_id}")
            notify_ops.retire_webhooks(conn, row.id)  # what they owe is still told
            conn.execute(connections.delete().where(connections.c.id == row.id))
            live = conn.execute(
                sa.select(jobs.c.id).where(
                    jobs.c.scope == str(row.id),
                    jobs.c.type.in_(REPLICATION_TYPES),
                    jobs.c.status.in_(LIVE_STATUSES),
                )
            ).scalars()
            for job_id in list(live):
                cancel_in(conn, job_id, now)


def _implements(store: SqlJobStore) -> JobStore:
    return store  # mypy checks here that SqlJobStore satisfies the protocol
