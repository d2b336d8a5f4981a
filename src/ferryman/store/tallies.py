"""Counts over the whole store for ``/metrics``: a few aggregate queries, one GROUP BY each.

The figures are read from the rows at the moment they are asked for, never kept in a process, so
they are right whichever engine processes (``ferryman worker``, a server, Temporal workers, on any
host) moved the jobs. No query runs per job or per connection:

* jobs by type and status: ``GROUP BY type, status`` (``ix_jobs_type_status_id``, index only);
* the oldest pending job of each type: ``WHERE status = 'pending' GROUP BY type``
  (an index finds the few pending rows);
* attempt durations, bucketed in SQL: the folded histograms (below) plus the unfolded ended
  attempts joined to their job, ``GROUP BY type, status``;
* records and bytes: the folded totals plus the stream stats of the unfolded attempts, joined to
  their job, ``GROUP BY type``;
* scheduler lag (``jobs.scheduled_for``, when the schema has it): one aggregate and one row;
* the store's time, last: the oldest pending job's age is counted to it (``created_at`` is the
  store's time too), so a server whose clock is off still shows the true age.

Durations are seconds computed by the database: ``julianday`` differences on SQLite (which keeps
UTC text), ``EXTRACT(EPOCH FROM ...)`` on Postgres.

Ended attempts are folded, not summed at every scrape: an ended attempt and its stream stats never
change again (stats are written only while the attempt runs), so a scrape first folds the ended
attempts not yet folded into ``tally_seals`` (a bounded batch, one write transaction: marked with
the batch's number in ``attempts.tally_batch`` and added to the sums together, so a crash folds
all of the batch or none of it, and two servers folding at once never fold one attempt twice).
The histogram and the stream totals are then the folded sums plus what the rows still unfolded
(``tally_batch IS NULL``: running attempts and those ended since) hold, read in one snapshot.
A scrape so reads the live part of the store, whatever its history.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection as SqlConnection

from ferryman.store.db import Database
from ferryman.store.schema import TALLY_VALUES, UtcDateTime, attempts, jobs, stream_stats, tally_seals

# Upper bounds (seconds) of the histogram buckets; +Inf is implied. Attempts run from a second
# (spec) to hours (a large sync); a scheduled job should start within seconds of its due time.
DURATION_BUCKETS_S: tuple[float, ...] = (1, 5, 15, 60, 300, 900, 3600, 10800)
LAG_BUCKETS_S: tuple[float, ...] = (1, 5, 15, 30, 60, 300, 900, 3600)
SCHEDULED_FOR = "scheduled_for"  # jobs.scheduled_for: the due time a scheduled job was created for
# Ended attempts folded by one scrape at most. The first scrapes after the upgrade fold the history
# in batches of this many: on SQLite the fold holds the write lock, and 20,000 at a time held it
# for 0.6-1.5 s on a loaded host (docs/performance.md, Session 27); 5,000 keeps it to a fraction.
FOLD_BATCH = 5_000
_UNFOLDED = attempts.c.tally_batch.is_(None)


@dataclass(frozen=True)
class JobCount:
    """How many jobs of one type are in one status now."""

    type: str
    status: str
    count: int


@dataclass(frozen=True)
class Histogram:
    """Observations bucketed by the database: ``cumulative[i]`` counts those <= ``bounds[i]``."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    count: int
    sum_s: float


@dataclass(frozen=True)
class DurationTally:
    """Ended attempts of one job type that ended in one status, and how long they ran."""

    type: str
    status: str
    histogram: Histogram


@dataclass(frozen=True)
class StreamTotals:
    """Records and bytes over every stream of every attempt of jobs of one type."""

    type: str
    records_emitted: int
    bytes_emitted: int
    records_committed: int
    bytes_committed: int


@dataclass(frozen=True)
class LagTally:
    """Due time to creation of scheduled jobs: all of them, and the newest one."""

    histogram: Histogram
    last_s: float | None  # the newest scheduled job's lag; None before the first


@dataclass(frozen=True)
class Tallies:
    jobs: list[JobCount]
    oldest_pending: dict[str, datetime]  # job type -> created_at of its oldest pending job
    durations: list[DurationTally]
    streams: list[StreamTotals]
    lag: LagTally | None  # None: not read (families from plain values in tests)
    read_at: datetime  # the store's time at the reading: ages are counted to it, not a host's


class TallyOps:
    _db: Database

    def tallies(self) -> Tallies:
        """Every count ``/metrics`` shows, read in one snapshot (after folding what ended)."""
        with suppress(sa.exc.OperationalError):  # a read-only or busy store: nothing folded,
            self.fold_tallies()  # the unfolded rows are read instead, as exactly
        sqlite = self._db.is_sqlite
        # One snapshot: folded and unfolded figures read at different moments could count a batch
        # folded in between twice, or not at all.
        with self._db.snapshot() as conn:
            return Tallies(
                jobs=_job_counts(conn),
                oldest_pending=_oldest_pending(conn),
                durations=_merged_durations(_sealed_durations(conn), _durations(conn, sqlite, _UNFOLDED)),
                streams=_merged_streams(_sealed_streams(conn), _stream_totals(conn, _UNFOLDED)),
                lag=_lag(conn, sqlite),
                read_at=conn.execute(sa.select(self._db.now())).scalar_one(),
            )

    def fold_tallies(self, limit: int = FOLD_BATCH) -> int:
        """Fold up to ``limit`` ended attempts not yet folded into ``tally_seals``; how many.

        Looked for with a read first (the partial index holds only the unfolded attempts): a
        scrape with nothing to fold takes no write lock, which on SQLite would make a running
        sync's state save wait."""
        waiting = sa.select(attempts.c.id).where(_UNFOLDED, attempts.c.ended_at.is_not(None)).limit(1)
        with self._db.read() as conn:
            if conn.execute(waiting).first() is None:
                return 0
        with self._db.write() as conn:
            oldest = (
                sa.select(attempts.c.id)
                .where(_UNFOLDED, attempts.c.ended_at.is_not(None))
                .order_by(attempts.c.id)
                .limit(limit)
                .subquery()
            )
            low, high = conn.execute(sa.select(sa.func.min(oldest.c.id), sa.func.max(oldest.c.id))).one()
            if low is None:
                return 0
            # A number of its own, so that a server folding at the same time (Postgres: it waits
            # on the rows this one marks, then skips them) never sums this batch's attempts.
            batch = secrets.randbits(62) + 1
            span = attempts.c.id.between(low, high)
            marked = conn.execute(
                attempts.update()
                .where(span, _UNFOLDED, attempts.c.ended_at.is_not(None))
                .values(tally_batch=batch)
            ).rowcount
            mine = span & (attempts.c.tally_batch == batch)
            # In key order: two servers folding at once lock the rows of tally_seals in the same
            # order, so neither waits on a row the other holds while holding one it wants.
            by_key = sorted(_durations(conn, self._db.is_sqlite, mine), key=lambda t: (t.type, t.status))
            for tally in by_key:
                histogram = tally.histogram
                self._add_seal(
                    conn,
                    "durations",
                    tally.type,
                    tally.status,
                    histogram.count,
                    histogram.sum_s,
                    histogram.cumulative,
                )
            for totals in sorted(_stream_totals(conn, mine), key=lambda t: t.type):
                figures = (
                    totals.records_emitted,
                    totals.bytes_emitted,
                    totals.records_committed,
                    totals.bytes_committed,
                )
                self._add_seal(conn, "streams", totals.type, "", 0, 0.0, figures)
            return int(marked)

    def _add_seal(
        self,
        conn: SqlConnection,
        family: str,
        type: str,
        status: str,
        count: int,
        sum_s: float,
        values: Sequence[int],
    ) -> None:
        """Add figures to one row of ``tally_seals`` (made at 0 when missing), in the database:
        two folds at once add up, neither overwrites the other."""
        padded = (*values, *[0] * (TALLY_VALUES - len(values)))
        row = {"family": family, "type": type, "status": status, "count": count, "sum_s": sum_s}
        row |= {f"v{n}": int(value) for n, value in enumerate(padded, start=1)}
        insert = self._db.insert(tally_seals).values(**row)
        added = ["count", "sum_s", *(f"v{n}" for n in range(1, TALLY_VALUES + 1))]
        insert = insert.on_conflict_do_update(
            index_elements=[tally_seals.c.family, tally_seals.c.type, tally_seals.c.status],
            set_={name: tally_seals.c[name] + insert.excluded[name] for name in added},
        )
        conn.execute(insert)


def _job_counts(conn: SqlConnection) -> list[JobCount]:
    statement = sa.select(jobs.c.type, jobs.c.status, sa.func.count()).group_by(jobs.c.type, jobs.c.status)
    return [JobCount(type, status, int(count)) for type, status, count in conn.execute(statement)]


def _oldest_pending(conn: SqlConnection) -> dict[str, datetime]:
    oldest = sa.func.min(jobs.c.created_at, type_=UtcDateTime)
    statement = sa.select(jobs.c.type, oldest).where(jobs.c.status == "pending").group_by(jobs.c.type)
    return {type: created for type, created in conn.execute(statement) if created is not None}


def seconds_between(start: Any, end: Any, sqlite: bool) -> sa.ColumnElement[Any]:
    """``end - start`` in seconds, as a float, computed by the database."""
    if sqlite:
        return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0
    return sa.extract("epoch", end - start)


def _computed_once(rows: sa.Select[Any], sqlite: bool) -> sa.Subquery:
    """``rows`` as a subquery whose computed columns SQLite works out once per row.

    SQLite flattens a plain subquery into the aggregate around it, and then evaluates the
    duration expression (two ``julianday`` calls) once for every reference: ten times per row
    with eight buckets: 876 ms instead of 147 ms over 100,000 attempts. SQLite's flattener leaves
    a subquery with a LIMIT alone under an aggregate (the plan shows a CO-ROUTINE, each row
    computed once), and ``LIMIT -1`` means no limit. Postgres needs none of it: EXTRACT is cheap."""
    return (rows.limit(-1) if sqlite else rows).subquery()


def _bucketed(value: Any, bounds: Sequence[float]) -> list[sa.ColumnElement[Any]]:
    """COUNT, SUM and one cumulative bucket count per bound, over ``value``."""
    return [
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(value), 0),
        *(sa.func.sum(sa.case((value <= bound, 1), else_=0)) for bound in bounds),
    ]


def _histogram(bounds: tuple[float, ...], figures: Sequence[Any]) -> Histogram:
    count, total, *buckets = figures
    return Histogram(bounds, tuple(int(bucket or 0) for bucket in buckets), int(count), float(total))


def _durations(conn: SqlConnection, sqlite: bool, which: sa.ColumnElement[bool]) -> list[DurationTally]:
    """The duration histograms of the ended attempts ``which`` selects."""
    seconds = seconds_between(attempts.c.created_at, attempts.c.ended_at, sqlite).label("seconds")
    ended_rows = (
        sa.select(jobs.c.type, attempts.c.status, seconds)
        .join_from(attempts, jobs, attempts.c.job_id == jobs.c.id)
        .where(attempts.c.ended_at.is_not(None), which)
    )
    ended = _computed_once(ended_rows, sqlite)
    statement = sa.select(ended.c.type, ended.c.status, *_bucketed(ended.c.seconds, DURATION_BUCKETS_S))
    statement = statement.group_by(ended.c.type, ended.c.status)
    return [
        DurationTally(type, status, _histogram(DURATION_BUCKETS_S, figures))
        for type, status, *figures in conn.execute(statement)
    ]


def _stream_totals(conn: SqlConnection, which: sa.ColumnElement[bool]) -> list[StreamTotals]:
    """Records and bytes over the stream stats of the attempts ``which`` selects."""

    def total(column: sa.Column[Any]) -> sa.ColumnElement[Any]:
        return sa.func.coalesce(sa.func.sum(column), 0)

    statement = (
        sa.select(
            jobs.c.type,
            total(stream_stats.c.records_emitted),
            total(stream_stats.c.bytes_emitted),
            total(stream_stats.c.records_committed),
            total(stream_stats.c.bytes_committed),
        )
        .join_from(stream_stats, attempts, stream_stats.c.attempt_id == attempts.c.id)
        .join(jobs, attempts.c.job_id == jobs.c.id)
        # IN, not a filter on the join: SQLite then looks the few attempts' stats up by their
        # index (uq_stream_stats_attempt_stream) instead of scanning every stream stat.
        .where(stream_stats.c.attempt_id.in_(sa.select(attempts.c.id).where(which)))
        .group_by(jobs.c.type)
    )
    return [
        StreamTotals(type, int(records), int(size), int(records_committed), int(bytes_committed))
        for type, records, size, records_committed, bytes_committed in conn.execute(statement)
    ]


def _lag(conn: SqlConnection, sqlite: bool) -> LagTally:
    scheduled_for = jobs.c.scheduled_for
    lag = seconds_between(scheduled_for, jobs.c.created_at, sqlite)
    scheduled = jobs.select().with_only_columns(lag.label("seconds")).where(scheduled_for.is_not(None))
    lags = _computed_once(scheduled, sqlite)
    figures = conn.execute(sa.select(*_bucketed(lags.c.seconds, LAG_BUCKETS_S))).one()
    newest = scheduled.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(1)
    last = conn.execute(newest).scalar()
    return LagTally(_histogram(LAG_BUCKETS_S, figures), None if last is None else float(last))


def _sealed_durations(conn: SqlConnection) -> list[DurationTally]:
    buckets = [tally_seals.c[f"v{n}"] for n in range(1, len(DURATION_BUCKETS_S) + 1)]
    statement = sa.select(
        tally_seals.c.type, tally_seals.c.status, tally_seals.c.count, tally_seals.c.sum_s, *buckets
    ).where(tally_seals.c.family == "durations")
    return [
        DurationTally(type, status, _histogram(DURATION_BUCKETS_S, figures))
        for type, status, *figures in conn.execute(statement)
    ]


def _sealed_streams(conn: SqlConnection) -> list[StreamTotals]:
    values = [tally_seals.c[f"v{n}"] for n in range(1, 5)]
    statement = sa.select(tally_seals.c.type, *values).where(tally_seals.c.family == "streams")
    return [
        StreamTotals(type, *(int(value) for value in figures)) for type, *figures in conn.execute(statement)
    ]


def _merged_durations(*parts: list[DurationTally]) -> list[DurationTally]:
    merged: dict[tuple[str, str], DurationTally] = {}
    for tally in (tally for part in parts for tally in part):
        key = (tally.type, tally.status)
        before = merged.get(key)
        if before is None:
            merged[key] = tally
            continue
        a, b = before.histogram, tally.histogram
        cumulative = tuple(x + y for x, y in zip(a.cumulative, b.cumulative, strict=True))
        merged[key] = replace(
            before, histogram=Histogram(a.bounds, cumulative, a.count + b.count, a.sum_s + b.sum_s)
        )
    return list(merged.values())


def _merged_streams(*parts: list[StreamTotals]) -> list[StreamTotals]:
    merged: dict[str, StreamTotals] = {}
    for totals in (totals for part in parts for totals in part):
        before = merged.get(totals.type)
        merged[totals.type] = (
            totals
            if before is None
            else StreamTotals(
                totals.type,
                before.records_emitted + totals.records_emitted,
                before.bytes_emitted + totals.bytes_emitted,
                before.records_committed + totals.records_committed,
                before.bytes_committed + totals.bytes_committed,
            )
        )
    return list(merged.values())
