"""Jobs, attempts and stream stats: the half of the store that engines drive.

Every status change is decided by :func:`ferryman.jobs.states.apply` (or ``apply_attempt``) and
written compare-and-set: ``UPDATE ... WHERE id = :id AND status = :seen``. When no row matches,
someone else moved it since it was read; the decision is taken once more on a fresh read, and a
second miss raises :class:`StaleWrite`. Each public operation is one transaction.

An attempt's outcome (succeed, fail, cancel) moves the job only if it moved the attempt: an
outcome reported twice, or for an attempt that another engine already failed as stale, changes
nothing and returns the job as it is.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection as SqlConnection
from sqlalchemy.exc import IntegrityError

from ferryman.errors import UserInputError
from ferryman.jobs.states import (
    ATTEMPT_TRANSITIONS,
    JOB_TRANSITIONS,
    AttemptStatus,
    JobStatus,
    JobType,
    apply,
    apply_attempt,
)
from ferryman.store import notify_ops, rows
from ferryman.store.base import Attempt, ConnectionBusy, Job, JobTotals, NotFound, StaleWrite, StreamStat
from ferryman.store.config_ops import state_upsert
from ferryman.store.db import Database
from ferryman.store.schema import (
    LIVE_STATUSES,
    REPLICATION_TYPES,
    UtcDateTime,
    attempts,
    bound_late,
    connections,
    jobs,
    stream_stats,
)

_CONNECTION_ID = re.compile(r"[0-9]{1,18}")  # a replication job's scope: its connection's id
_STAT_COLUMNS = (
    "records_emitted",
    "bytes_emitted",
    "records_committed",
    "bytes_committed",
    "estimated_records",
    "estimated_bytes",
)


def _hold_connection(conn: SqlConnection, type: JobType, scope: str, postgres: bool, required: bool) -> None:
    """A sync/reset job's connection, held for the insert's transaction.

    Postgres: its row is held FOR KEY SHARE until the commit. A delete in progress is waited for
    (the row is gone then); one that comes later waits for this job, sees it and cancels it. A
    state edit in progress (``replace_state``, which holds the row FOR UPDATE) is waited for too,
    so the job's attempts read the edited state. SQLite: the write transaction is the lock.

    ``required``: a connection that no longer exists gets no job (NotFound). Its caller read it
    first (a sync asked for through the API or the CLI); deleted since, its job would have run
    against a destination nobody configures any more, or failed three times."""
    found = None
    if _CONNECTION_ID.fullmatch(scope) and (postgres or required):
        query = sa.select(connections.c.id).where(connections.c.id == int(scope))
        found = conn.execute(query.with_for_update(key_share=True) if postgres else query).first()
    if required and found is None:
        raise NotFound(f"connection {scope} was deleted: no {type} job was queued")


def _job_row(conn: SqlConnection, job_id: int, config: sa.ColumnElement[Any] = jobs.c.config) -> Any:
    row = None
    if 0 < job_id <= rows.MAX_ID:  # a larger number names no job, and would overflow the query
        columns = [config if column.name == "config" else column for column in jobs.c]
        row = conn.execute(sa.select(*columns).where(jobs.c.id == job_id)).first()
    if row is None:
        raise NotFound(f"no job {job_id}")
    return row


def _config_but_catalog(dialect: str) -> sa.ColumnElement[Any]:
    """A job's config with a sync's or reset's catalog taken out by the database, which parses
    the JSON far faster than Python decodes it (SQLite keeps integers past 64 bits as written)."""
    removed: sa.ColumnElement[Any]
    if dialect == "postgresql":  # JSONB
        removed = jobs.c.config.op("-")(sa.literal("catalog", sa.Text))
    else:
        removed = sa.func.json_remove(jobs.c.config, "$.catalog")
    config = sa.case((jobs.c.type.in_(REPLICATION_TYPES), removed), else_=jobs.c.config)
    return sa.type_coerce(config, jobs.c.config.type).label("config")


def cancel_in(conn: SqlConnection, job_id: int, now: datetime) -> Job:
    """Cancel a job in the caller's transaction: a pending or incomplete one at once, a running
    one flagged (its engine stops it)."""
    for _ in range(2):
        row = _job_row(conn, job_id)
        status = JobStatus(row.status)
        if status.terminal:
            return rows.job(row)
        if status is not JobStatus.RUNNING:
            # Compare-and-set on the status read: an engine that claimed the job since
            # runs an attempt now, which must be stopped first (the flag, below), never
            # the job ended under it (its connection would be free for a second sync).
            moved = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == status.value)
                .values(status=JobStatus.CANCELLED.value, cancel_requested=True, updated_at=now)
                .returning(*jobs.c)
            ).first()
            if moved is not None:
                return _moved(conn, rows.job(moved), JobStatus.CANCELLED, now)
            continue
        flagged = conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING.value)
            .values(cancel_requested=True, updated_at=now)
            .returning(*jobs.c)
        ).first()
        if flagged is not None:
            return rows.job(flagged)
    raise StaleWrite(f"job {job_id} keeps changing under us; cancel not recorded", job_id=job_id)


def _runnable(store_now: sa.ColumnElement[datetime] | None) -> sa.ColumnElement[bool]:
    """Pending jobs, and incomplete ones whose backoff is over by the store's clock (``store_now``;
    None: whatever ``next_attempt_at`` says, the caller having waited it out itself)."""
    due: sa.ColumnElement[bool] = sa.true() if store_now is None else jobs.c.next_attempt_at <= store_now
    return sa.and_(
        sa.not_(jobs.c.cancel_requested),
        sa.or_(
            jobs.c.status == JobStatus.PENDING.value,
            sa.and_(jobs.c.status == JobStatus.INCOMPLETE.value, due),
        ),
    )


def _job_columns(read_config: bool) -> list[sa.ColumnElement[Any]]:
    """What a write returns of a job: every column, or all but the config (NULL in its place,
    which rows.job reads as UnreadConfig)."""
    return list(jobs.c) if read_config else _JOB_BUT_CONFIG


_JOB_BUT_CONFIG: list[sa.ColumnElement[Any]] = [
    sa.null().label("config") if column.name == "config" else column for column in jobs.c
]


def move_job(
    conn: SqlConnection,
    job_id: int,
    target: JobStatus,
    now: datetime,
    expected: JobStatus | None = None,
    read_config: bool = True,
    **values: Any,
) -> Job:
    """Compare-and-set the job to ``target`` (plus ``values``); a terminal job comes back unchanged.

    ``expected``: the status the caller believes the job has; the write is tried on that belief
    first, sparing the read (one statement instead of two in the common case). Without
    ``read_config``, the job written comes back with its config unread (see end_attempt)."""
    if expected is not None and not expected.terminal and target in JOB_TRANSITIONS[expected]:
        moved = conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.status == expected.value)
            .values(status=target.value, updated_at=now, **values)
            .returning(*_job_columns(read_config))
        ).first()
        if moved is not None:
            return _moved(conn, rows.job(moved), target, now)
    for _ in range(2):
        row = _job_row(conn, job_id)
        seen = JobStatus(row.status)
        to = apply(seen, target)
        if to is None:
            return rows.job(row)
        statement = (
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.status == seen.value)
            .values(status=to.value, updated_at=now, **values)
            .returning(*_job_columns(read_config))
        )
        moved = conn.execute(statement).first()
        if moved is not None:
            return _moved(conn, rows.job(moved), to, now)
    raise StaleWrite(f"job {job_id} keeps changing under us; not moved to {target}", job_id=job_id)


def _moved(conn: SqlConnection, job: Job, to: JobStatus, now: datetime) -> Job:
    if to.terminal:  # its notices commit with its end, or not at all (notify_ops)
        notify_ops.job_ended(conn, job, now)
    return job


def _attempt_columns(written: dict[str, Any]) -> list[sa.ColumnElement[Any]]:
    """What an attempt's end returns of it: every column, but not an output it writes (NULL in
    its place): the caller holds that document (a sync's: thousands of stream stats and states)."""
    return _ATTEMPT_BUT_OUTPUT if "output" in written else list(attempts.c)


_ATTEMPT_BUT_OUTPUT: list[sa.ColumnElement[Any]] = [
    sa.null().label("output") if column.name == "output" else column for column in attempts.c
]


def _ended_attempt(row: Any, written: dict[str, Any]) -> Attempt:
    """The attempt a write returned (``_attempt_columns``), with the output it wrote."""
    attempt = rows.attempt(row)
    return dataclasses.replace(attempt, output=written["output"]) if "output" in written else attempt


def move_attempt(
    conn: SqlConnection, attempt_id: int, target: AttemptStatus, now: datetime, **values: Any
) -> Attempt | None:
    """Compare-and-set the attempt to ``target``; None when it had ended already (a no-op).
    An output in ``values`` is not read back (see ``_attempt_columns``).

    Tried first as running -> ``target`` without a read: an attempt's outcome nearly always
    finds it running."""
    written, returned = values, _attempt_columns(values)
    values, late = bound_late(values)  # an output: not kept by SQLAlchemy's statement cache
    if target in ATTEMPT_TRANSITIONS[AttemptStatus.RUNNING]:
        moved = conn.execute(
            attempts.update()
            .where(attempts.c.id == attempt_id, attempts.c.status == AttemptStatus.RUNNING.value)
            .values(status=target.value, updated_at=now, **values)
            .returning(*returned),
            late,
        ).first()
        if moved is not None:
            return _ended_attempt(moved, written)
    for _ in range(2):
        row = conn.execute(sa.select(attempts).where(attempts.c.id == attempt_id)).first()
        if row is None:
            raise NotFound(f"no attempt {attempt_id}")
        seen = AttemptStatus(row.status)
        to = apply_attempt(seen, target)
        if to is None:
            return None
        statement = (
            attempts.update()
            .where(attempts.c.id == attempt_id, attempts.c.status == seen.value)
            .values(status=to.value, updated_at=now, **values)
            .returning(*returned)
        )
        moved = conn.execute(statement, late).first()
        if moved is not None:
            return _ended_attempt(moved, written)
    raise StaleWrite(f"attempt {attempt_id} keeps changing under us; not moved to {target}")


def _from(query: sa.Select[Any]) -> sa.Select[Any]:
    """``SELECT * FROM (query)``: a select that may sit in a UNION with its ORDER BY, LIMIT and
    FOR UPDATE."""
    inner = query.subquery()
    return sa.select(*inner.c)


def _move_to_running(conn: SqlConnection, job_id: int, seen: JobStatus, now: datetime) -> tuple[Job, int]:
    """Move a job a claim picked to running; returns it with how many attempts it had, the new
    attempt's number. The claim holds the job (its row lock, or SQLite's write lock), so the
    write finds it as picked and the count comes with it in the same statement; otherwise it is
    decided again on a fresh read (``move_job``) and counted apart."""
    values: dict[str, Any] = {
        "started_at": sa.func.coalesce(jobs.c.started_at, sa.literal(now, UtcDateTime())),
        "next_attempt_at": None,
    }
    # By the job's id given, not jobs.id: SQLite's RETURNING drops the table name, and a bare
    # ``id`` in the subquery would be the attempt's.
    tried = sa.select(sa.func.count()).select_from(attempts).where(attempts.c.job_id == job_id)
    if JobStatus.RUNNING in JOB_TRANSITIONS[seen]:
        moved = conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.status == seen.value)
            .values(status=JobStatus.RUNNING.value, updated_at=now, **values)
            .returning(*jobs.c, tried.scalar_subquery().label("tried"))
        ).first()
        if moved is not None:
            return rows.job(moved), int(moved.tried)
    job = move_job(conn, job_id, JobStatus.RUNNING, now, **values)
    return job, int(conn.execute(tried).scalar_one())


def _ends_a_running_job(attempt_status: AttemptStatus, job_status: JobStatus) -> bool:
    return (
        attempt_status in ATTEMPT_TRANSITIONS[AttemptStatus.RUNNING]
        and job_status in JOB_TRANSITIONS[JobStatus.RUNNING]
    )


def _end_at_once(
    conn: SqlConnection,
    attempt: Attempt,
    attempt_status: AttemptStatus,
    job_status: JobStatus,
    now: datetime,
    attempt_values: dict[str, Any],
    job_values: dict[str, Any],
    read_config: bool = True,
) -> tuple[Attempt, Job | None] | None:
    """Postgres: an outcome's two compare-and-set writes in one statement, one round trip: the
    running attempt to ``attempt_status``, and, only if that moved it, the running job to
    ``job_status`` (two data-modifying CTEs, their rows joined). None when the attempt had
    ended already; the job None when the attempt moved but the job was not running. The
    caller writes the notices of a job that ended (``_moved``), in the same transaction."""
    written, returned = attempt_values, _attempt_columns(attempt_values)
    attempt_values, late = bound_late(attempt_values)  # not kept by the statement cache
    ended = (
        attempts.update()
        .where(attempts.c.id == attempt.id, attempts.c.status == AttemptStatus.RUNNING.value)
        .values(status=attempt_status.value, updated_at=now, ended_at=now, **attempt_values)
        .returning(*returned)
        .cte("ended")
    )
    moved = (
        jobs.update()
        .where(
            jobs.c.id == attempt.job_id,
            jobs.c.status == JobStatus.RUNNING.value,
            sa.exists(sa.select(ended.c.id)),
        )
        .values(status=job_status.value, updated_at=now, **job_values)
        .returning(*_job_columns(read_config))
        .cte("moved")
    )
    query = sa.select(
        *(column.label(f"a_{column.name}") for column in ended.c),
        *(column.label(f"j_{column.name}") for column in moved.c),
    ).select_from(ended.outerjoin(moved, sa.true()))
    row = conn.execute(query, late).first()
    if row is None:
        return None
    values = row._mapping
    ended_attempt = _ended_attempt(_prefixed(values, "a_"), written)
    return ended_attempt, None if values["j_id"] is None else rows.job(_prefixed(values, "j_"))


def _prefixed(values: Any, prefix: str) -> Any:
    """The columns of a joined row that start with ``prefix``, without it, read as a row's."""
    return SimpleNamespace(
        **{key[len(prefix) :]: value for key, value in values.items() if key.startswith(prefix)}
    )


class JobOps:
    _db: Database

    # -- creating and reading jobs ----------------------------------------------------------

    def enqueue(
        self, type: JobType, scope: str | None, config: dict[str, Any], require_connection: bool = False
    ) -> Job:
        return self._enqueue(type, scope, config, None, require_connection)[0]

    def enqueue_running(
        self,
        type: JobType,
        scope: str | None,
        config: dict[str, Any],
        engine_id: str,
        now: datetime,
        log_path_for: Callable[[int, int], str],
        require_connection: bool = False,
    ) -> tuple[Job, Attempt]:
        claim = (engine_id, now, log_path_for)
        job, attempt = self._enqueue(type, scope, config, claim, require_connection)
        assert attempt is not None
        return job, attempt

    def _enqueue(
        self,
        type: JobType,
        scope: str | None,
        config: dict[str, Any],
        claim: tuple[str, datetime, Callable[[int, int], str]] | None,
        require_connection: bool,
    ) -> tuple[Job, Attempt | None]:
        type = JobType(type)
        if type.is_replication and not scope:
            raise UserInputError(f"a {type} job needs its connection id as scope")
        # The store's time, not this host's: a job's age is judged against the store's time (the
        # Temporal sweep, /metrics) and its created_at against a connection's active_since (the
        # scheduler's failure streak), whichever host queued it.
        stamp = self._db.stamp()
        values = {
            "type": type.value,
            "scope": scope,
            "config": config,
            "status": JobStatus.PENDING.value,
            "created_at": stamp,
            "updated_at": stamp,
            "cancel_requested": False,
        }
        # The config (the whole catalog, for a sync) is bound at execution: see bound_late.
        kept, late = bound_late(values)
        # A job claimed at once comes back from its move to running: the insert returns its id
        # only, not a config decoded for nothing.
        returned = list(jobs.c) if claim is None else [jobs.c.id]
        for _ in range(2):
            try:
                with self._db.write() as conn:
                    if type.is_replication and scope:
                        _hold_connection(conn, type, scope, not self._db.is_sqlite, require_connection)
                    insert = jobs.insert().values(**kept).returning(*returned)
                    row = conn.execute(insert, late).one()
                    if claim is None:
                        return rows.job(row), None
                    engine_id, now, log_path_for = claim
                    return self._start_attempt(conn, row.id, JobStatus.PENDING, engine_id, now, log_path_for)
            except IntegrityError:
                # Only the partial unique index can refuse this insert: a live sync/reset exists.
                if not type.is_replication:
                    raise
                live = self.live_job(scope)
                if live is not None:
                    after = (
                        " (its next attempt waits for an engine)"
                        if live.status is JobStatus.INCOMPLETE
                        else ""
                    )
                    raise ConnectionBusy(
                        f"connection {scope} already has a live {live.type} job {live.id}, "
                        f"{live.status}{after}: wait for it or cancel it",
                        job_id=live.id,
                        status=live.status.value,
                    ) from None
        raise ConnectionBusy(f"connection {scope} is busy with another sync or reset job")

    def live_job(self, scope: str | None) -> Job | None:
        """The pending, running or incomplete sync/reset job of this connection, if any."""
        with self._db.read() as conn:
            row = conn.execute(
                sa.select(jobs).where(
                    jobs.c.scope == scope,
                    jobs.c.type.in_(REPLICATION_TYPES),
                    jobs.c.status.in_(LIVE_STATUSES),
                )
            ).first()
        return None if row is None else rows.job(row)

    def get_job(self, job_id: int, catalog: bool = True) -> Job:
        with self._db.read() as conn:
            if catalog:
                return rows.job(_job_row(conn, job_id))
            return rows.job_without_catalog(_job_row(conn, job_id, _config_but_catalog(self._db.dialect)))

    def list_jobs(
        self,
        scope: str | None = None,
        status: JobStatus | None = None,
        type: JobType | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Newest first."""
        query = sa.select(jobs).order_by(jobs.c.id.desc()).limit(min(limit, rows.MAX_ID))
        if scope is not None:
            query = query.where(jobs.c.scope == scope)
        if status is not None:
            query = query.where(jobs.c.status == JobStatus(status).value)
        if type is not None:
            query = query.where(jobs.c.type == JobType(type).value)
        with self._db.read() as conn:
            return [rows.job(row) for row in conn.execute(query)]

    def list_attempts(self, job_id: int, outputs: bool = True) -> list[Attempt]:
        if not 0 < job_id <= rows.MAX_ID:
            return []
        columns = list(attempts.c) if outputs else _ATTEMPT_BUT_OUTPUT
        with self._db.read() as conn:
            result = conn.execute(
                sa.select(*columns).where(attempts.c.job_id == job_id).order_by(attempts.c.number)
            )
            return [rows.attempt(row) for row in result]

    # -- claiming ---------------------------------------------------------------------------

    def claim(
        self,
        engine_id: str,
        free_slots: dict[str, int],
        now: datetime,
        log_path_for: Callable[[int, int], str],
        only: Collection[int] | None = None,
        backoff_waited: bool = False,
    ) -> list[tuple[Job, Attempt]]:
        wanted = {slot: count for slot, count in free_slots.items() if count > 0}
        if not wanted or (only is not None and not only):
            return []
        runnable = _runnable(None if backoff_waited and only is not None else self._db.now())
        picks = []
        for slot, count in sorted(wanted.items()):
            types = [t.value for t in JobType if t.slot == slot]
            if not types:
                continue
            query = (
                sa.select(jobs.c.id, jobs.c.status, sa.literal(slot).label("slot"))
                .where(jobs.c.type.in_(types), runnable)
                .order_by(jobs.c.id)
                .limit(count)
            )
            if only is not None:
                query = query.where(jobs.c.id.in_(list(only)))
            if not self._db.is_sqlite:  # Postgres: rows another claimer holds are skipped
                query = query.with_for_update(skip_locked=True)
            picks.append(query)
        if not picks:
            return []
        # Every slot's oldest runnable jobs in one statement (one round trip), each slot under
        # its own limit; Postgres allows FOR UPDATE in a UNION only inside a subquery.
        statement = picks[0] if len(picks) == 1 else sa.union_all(*(_from(pick) for pick in picks))
        claimed: list[tuple[Job, Attempt]] = []
        with self._db.write() as conn:  # SQLite: BEGIN IMMEDIATE, one claimer at a time
            found = sorted(conn.execute(statement).all(), key=lambda row: (row.slot, row.id))
            for job_id, status, _slot in found:
                seen = JobStatus(status)
                claimed.append(self._start_attempt(conn, job_id, seen, engine_id, now, log_path_for))
        return claimed

    def _start_attempt(
        self,
        conn: SqlConnection,
        job_id: int,
        seen: JobStatus,
        engine_id: str,
        now: datetime,
        log_path_for: Callable[[int, int], str],
    ) -> tuple[Job, Attempt]:
        job, number = _move_to_running(conn, job_id, seen, now)
        values = {
            "job_id": job_id,
            "number": number,
            "status": AttemptStatus.RUNNING.value,
            "log_path": str(log_path_for(job_id, number)),
            "created_at": now,
            "updated_at": now,
            "engine_id": engine_id,
            "heartbeat_at": self._db.now(),  # the store's time, as every heartbeat (see heartbeat)
            "pids": [],
        }
        row = conn.execute(attempts.insert().values(**values).returning(*attempts.c)).one()
        return job, rows.attempt(row)

    def now(self) -> datetime:
        """The store's own time, read: what retry backoffs and heartbeats are judged by."""
        with self._db.read() as conn:
            return conn.execute(sa.select(self._db.now())).scalar_one()

    def heartbeat(self, engine_id: str, attempt_ids: list[int]) -> set[int]:
        """Renew the heartbeat of these attempts of ``engine_id``; returns those renewed. One
        missing has ended: on its own, or failed by another engine that took this one for dead.
        Stamped with the database's time, never the engine's: see ``stale_attempts``."""
        if not attempt_ids:
            return set()
        with self._db.write_statement() as conn:
            renewed = conn.execute(
                attempts.update()
                .where(
                    attempts.c.id.in_(attempt_ids),
                    attempts.c.engine_id == engine_id,
                    attempts.c.status == AttemptStatus.RUNNING.value,
                )
                .values(heartbeat_at=self._db.now())
                .returning(attempts.c.id)
            )
            return set(renewed.scalars())

    def set_job_config(self, job_id: int, config: dict[str, Any]) -> None:
        with self._db.write_statement() as conn:
            live = jobs.c.status.in_(LIVE_STATUSES)
            update = jobs.update().where(jobs.c.id == job_id, live).values(config=sa.bindparam("late_config"))
            conn.execute(update, {"late_config": config})  # not kept by the cache: see bound_late

    def set_attempt_pids(self, attempt_id: int, pids: list[int]) -> None:
        with self._db.write_statement() as conn:
            result = conn.execute(
                attempts.update().where(attempts.c.id == attempt_id).values(pids=list(pids))
            )
            if result.rowcount == 0:
                raise NotFound(f"no attempt {attempt_id}")

    def stale_attempts(self, stale_after_s: float) -> list[Attempt]:
        """Both ends of the comparison are the database's time (heartbeats are stamped with it):
        engines on hosts whose clocks disagree still agree on who is alive."""
        stale = attempts.c.heartbeat_at < self._db.now(before_s=stale_after_s)
        return self._running_attempts(stale)

    def running_attempts(self) -> list[Attempt]:
        return self._running_attempts(sa.true())

    def _running_attempts(self, condition: sa.ColumnElement[bool]) -> list[Attempt]:
        query = (
            sa.select(attempts)
            .where(attempts.c.status == AttemptStatus.RUNNING.value, condition)
            .order_by(attempts.c.id)
        )
        with self._db.read() as conn:
            return [rows.attempt(row) for row in conn.execute(query)]

    def waiting_attempts(self) -> list[Attempt]:
        """The last attempt of each incomplete sync/reset job: who ran it says who retries it."""
        query = (
            sa.select(attempts)
            .join(jobs, jobs.c.id == attempts.c.job_id)
            .where(jobs.c.status == JobStatus.INCOMPLETE.value, jobs.c.type.in_(REPLICATION_TYPES))
            .order_by(attempts.c.job_id, attempts.c.number)
        )
        with self._db.read() as conn:
            last = {row.job_id: row for row in conn.execute(query)}
        return [rows.attempt(row) for row in last.values()]

    # -- outcomes ---------------------------------------------------------------------------

    def end_attempt(
        self,
        attempt: Attempt,
        attempt_status: AttemptStatus,
        job_status: JobStatus,
        now: datetime,
        read_config: bool = True,
        **attempt_values: Any,
    ) -> tuple[Job, Attempt | None]:
        extra = {"next_attempt_at": None} if job_status is JobStatus.INCOMPLETE else {}
        with self._db.write() as conn:
            if not self._db.is_sqlite and _ends_a_running_job(attempt_status, job_status):
                ended = _end_at_once(
                    conn, attempt, attempt_status, job_status, now, attempt_values, extra, read_config
                )
                if ended is None:  # the attempt had ended already
                    return rows.job(_job_row(conn, attempt.job_id)), None
                ended_attempt, job = ended
                if job is None:  # the job was not running: decided on a fresh read
                    moved_job = move_job(
                        conn, attempt.job_id, job_status, now, read_config=read_config, **extra
                    )
                    return moved_job, ended_attempt
                return _moved(conn, job, job_status, now), ended_attempt  # with its notices
            moved = move_attempt(conn, attempt.id, attempt_status, now, ended_at=now, **attempt_values)
            if moved is None:
                return rows.job(_job_row(conn, attempt.job_id)), None
            job = move_job(conn, attempt.job_id, job_status, now, JobStatus.RUNNING, read_config, **extra)
            return job, moved

    def succeed_attempt(self, attempt: Attempt, output: dict[str, Any], now: datetime) -> Job:
        return self.end_attempt(attempt, AttemptStatus.SUCCEEDED, JobStatus.SUCCEEDED, now, output=output)[0]

    def fail_attempt(
        self, attempt: Attempt, output: dict[str, Any] | None, failure_summary: dict[str, Any], now: datetime
    ) -> Job:
        return self.end_attempt(
            attempt,
            AttemptStatus.FAILED,
            JobStatus.INCOMPLETE,
            now,
            output=output,
            failure_summary=failure_summary,
        )[0]

    def cancel_attempt(
        self, attempt: Attempt, output: dict[str, Any] | None, failure_summary: dict[str, Any], now: datetime
    ) -> Job:
        return self.end_attempt(
            attempt,
            AttemptStatus.FAILED,
            JobStatus.CANCELLED,
            now,
            output=output,
            failure_summary=failure_summary,
        )[0]

    def schedule_retry(self, job_id: int, backoff_s: float) -> Job:
        """The incomplete job waits ``backoff_s`` seconds, counted from the store's time (as the
        claim that ends the wait reads it, whichever engine's host clock is off); a job whose
        cancel was asked for is cancelled instead. A job no longer incomplete comes back
        unchanged: the decision was taken on a read that is out of date (another engine that
        recovered the same attempt has already claimed the retry, say), and moving it would
        free a running job for a second claim."""
        with self._db.write() as conn:
            row = _job_row(conn, job_id)
            seen = JobStatus(row.status)
            if seen is not JobStatus.INCOMPLETE:
                if seen is not JobStatus.RUNNING:
                    apply(seen, JobStatus.INCOMPLETE)  # a terminal job: a no-op; else it raises
                return rows.job(row)
            target = JobStatus.CANCELLED if row.cancel_requested else JobStatus.INCOMPLETE
            values = {} if row.cancel_requested else {"next_attempt_at": self._db.now(after_s=backoff_s)}
            moved = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == JobStatus.INCOMPLETE.value)
                .values(status=target.value, updated_at=rows.utcnow(), **values)
                .returning(*jobs.c)
            ).first()
            if moved is None:  # claimed or cancelled since the read
                return rows.job(_job_row(conn, job_id))
            return _moved(conn, rows.job(moved), target, rows.utcnow())

    def fail_job(self, job_id: int, now: datetime | None = None) -> Job:
        with self._db.write() as conn:
            return move_job(conn, job_id, JobStatus.FAILED, now or rows.utcnow())

    def fail_waiting_job(self, job_id: int, now: datetime) -> Job | None:
        """Incomplete -> failed, only if it is still incomplete (None if an engine took it)."""
        with self._db.write() as conn:
            moved = conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == JobStatus.INCOMPLETE.value)
                .values(status=JobStatus.FAILED.value, updated_at=now)
                .returning(*jobs.c)
            ).first()
            return None if moved is None else _moved(conn, rows.job(moved), JobStatus.FAILED, now)

    def cancel_requested(self, job_ids: Collection[int]) -> set[int]:
        wanted = [job_id for job_id in job_ids if 0 < job_id <= rows.MAX_ID]
        if not wanted:
            return set()
        query = sa.select(jobs.c.id).where(jobs.c.id.in_(wanted), jobs.c.cancel_requested)
        with self._db.read() as conn:
            return set(conn.execute(query).scalars())

    def request_cancel(self, job_id: int) -> Job:
        with self._db.write() as conn:
            return cancel_in(conn, job_id, rows.utcnow())

    # -- stream stats -----------------------------------------------------------------------

    def save_stream_stats(self, attempt_id: int, stats: list[StreamStat]) -> None:
        if not stats:
            return
        values = [rows.stream_stat_values(attempt_id, stat) for stat in stats]
        try:
            with self._db.write() as conn:
                conn.execute(self._stats_upsert(), values)
        except IntegrityError:
            raise NotFound(f"no attempt {attempt_id}") from None

    def _stats_upsert(self) -> Any:
        statement = self._db.insert(stream_stats)
        return statement.on_conflict_do_update(
            index_elements=[stream_stats.c.attempt_id, stream_stats.c.name, stream_stats.c.namespace],
            set_={name: statement.excluded[name] for name in _STAT_COLUMNS},
        )

    def save_progress(
        self,
        attempt_id: int,
        stats: list[StreamStat],
        connection_id: int | None = None,
        state: list[dict[str, Any]] | None = None,
        job_id: int | None = None,
    ) -> bool:
        """A running attempt's progress in one transaction: its per-stream stats and, given
        ``state``, the connection's committed state. Written only while the attempt is running;
        False, with nothing written, once it has ended. An engine cut off from the store for
        longer than the stale limit comes back to find its attempt failed by another engine and
        the job retried: its late save must not replace the newer attempt's state.

        Postgres: the attempt's row is held (FOR SHARE) until the commit, so an outcome written
        meanwhile waits for this save and never lands between the check and the write."""
        running = (
            sa.select(attempts.c.id)
            .where(attempts.c.id == attempt_id, attempts.c.status == AttemptStatus.RUNNING.value)
            .with_for_update(read=True)  # SQLite: nothing; its write transaction holds the file
        )
        try:
            with self._db.write() as conn:
                if conn.execute(running).first() is None:
                    return False
                if state is not None and connection_id is not None:
                    conn.execute(*state_upsert(self._db, connection_id, state, job_id))
                if stats:
                    values = [rows.stream_stat_values(attempt_id, stat) for stat in stats]
                    conn.execute(self._stats_upsert(), values)
        except IntegrityError:  # the attempt is there (it was just read): the connection is not
            # Deleted while its sync ran: the state has nowhere to go, the attempt's counts do.
            if stats:
                self.save_progress(attempt_id, stats)
            raise NotFound(f"no connection with id {connection_id} (deleted?)") from None
        return True

    def job_totals(self, job_id: int) -> JobTotals:
        """The job's attempts and figures, added up by the database over its attempts and their
        streams (a sync of thousands of streams has thousands of rows to add up, and reading an
        attempt reads its output, megabytes for such a sync)."""
        if not 0 < job_id <= rows.MAX_ID:
            return JobTotals(0, 0, 0, 0, 0)
        stat = stream_stats.c

        def total(value: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
            return sa.func.coalesce(sa.func.sum(value), 0)

        query = (
            sa.select(
                sa.func.count(sa.distinct(attempts.c.id)),
                total(stat.records_committed),
                total(stat.bytes_committed),
                total(sa.func.coalesce(stat.records_committed, stat.records_emitted)),
                total(sa.func.coalesce(stat.bytes_committed, stat.bytes_emitted)),
            )
            .select_from(attempts.outerjoin(stream_stats, attempts.c.id == stat.attempt_id))
            .where(attempts.c.job_id == job_id)
        )
        with self._db.read() as conn:
            found = conn.execute(query).one()
        return JobTotals(*(int(value) for value in found))

    def list_stream_stats(self, attempt_id: int) -> list[StreamStat]:
        query = (
            sa.select(stream_stats).where(stream_stats.c.attempt_id == attempt_id).order_by(stream_stats.c.id)
        )
        with self._db.read() as conn:
            return [rows.stream_stat(row) for row in conn.execute(query)]
