"""destination-postgres: one PostgreSQL table per stream, loaded with COPY.

Config::

    host, port            the server (port 5432 by default)
    database              the database (it must exist)
    username, password    the role to connect as (password secret, optional with trust or .pgpass)
    ssl_mode              libpq's sslmode: disable, allow, prefer (default), require, verify-ca,
                          verify-full; Airbyte's form {"mode": "require"} is accepted too
    url                   instead of the five above: postgresql://user:password@host:port/database
                          (secret)
    schema                the schema for streams without a namespace (default "public"); a
                          stream's namespace, when it has one, is its schema
    spill_directory       an existing, writable directory (absolute path) for the spill files of
                          the held records below (default: the system's temporary directory,
                          TMPDIR else /tmp); checked by ``check`` and before a ``write`` starts

Tables are named after their streams (at most 63 bytes, PostgreSQL's limit) and have the typed
shape of ``docs/destinations.md``, with PostgreSQL types (``bigint``, ``double precision``,
``text``, ``jsonb``, ``timestamp with time zone``...). A value that does not fit its column, or
that PostgreSQL cannot store (a NUL character, a lone UTF-16 surrogate escape), is NULL and
listed in ``_airbyte_meta``.

Loading: records are buffered per stream and copied (``COPY ... FROM STDIN``) into the table when
the buffers are full, inside one transaction that the next commit ends. So a state is echoed only
after the transaction holding every record before it is committed; a destination that is killed
leaves its open transaction to be rolled back by the server. Sync modes behave as in
destination-duckdb: ``append`` (the records after a stream's last state wait in a spill file
until a state covers them or the stream completes, and are dropped otherwise; see
:mod:`ferryman.builtin._postgres_hold`); ``append_dedup`` (rows copied into a temporary table
and merged at each commit: the latest by cursor, else by arrival, wins; ``_ab_cdc_deleted_at``
deletes); ``overwrite`` (a staging table of the sync's own,
``_ferryman_staging_<hash>_s<sync_id>``, replaces the table in the last commit's transaction if
the stream completed; a state commits the records before it into it, those after it are held as
under ``append``; otherwise the old table is kept and the staging table left to the sync's next
attempt, which takes it over; a retry of the same sync whose table already holds that sync's
rows writes straight into it).
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from ferryman.builtin._catalog import ConfiguredStream, StreamKey
from ferryman.builtin._columns import quote
from ferryman.builtin._destination import Unfinished, load, refuse_shared_tables
from ferryman.builtin._postgres_config import (
    NAME,
    SPECIFICATION,
    STREAMS_PER_TRANSACTION_ENV,
    PostgresConfig,
    check,
    connect,
    out_of_lock_slots,
    parse_config,
    require_spill_directory,
)
from ferryman.builtin._postgres_dedup import (
    batch_names,
    create_batch,
    encode_batch,
    merge_batch,
    prepare_dedup,
)
from ferryman.builtin._postgres_hold import Holds
from ferryman.builtin._postgres_refusals import ended_under_load
from ferryman.builtin._postgres_tables import (
    MODES,
    Encoded,
    Table,
    copy_encoded,
    encode,
    prepare,
    read_tables,
    rows,
    table_for,
)
from ferryman.builtin._refused import without_lone_surrogates
from ferryman.builtin._runtime import (
    ConfigError,
    Connector,
    Output,
    run,
)

# One stream's flush: the records copied straight into an append_dedup table that was empty, the
# records for the table (or its batch table), and those held until a state covers them.
_Handed = tuple[Encoded | None, Encoded | None, Encoded | None]
# How many streams one transaction may touch: each stream's table, its indexes, its TOAST table
# and its batch table hold a lock until the transaction ends, up to about ten, and the server's
# lock table has max_locks_per_transaction x max_connections slots, shared by every session. A
# transaction of the destination takes at most an eighth of them: 80 streams with PostgreSQL's
# defaults (64 x 100 / 80). STREAMS_PER_TRANSACTION_ENV sets another number (at least 1).
_SLOTS_PER_STREAM = 80


def streams_per_transaction(conn: psycopg.Connection[Any]) -> int:
    """How many streams a transaction may touch on this server (see STREAMS_PER_TRANSACTION_ENV)."""
    given = os.environ.get(STREAMS_PER_TRANSACTION_ENV, "").strip()
    if given:
        if not given.isdigit() or int(given) < 1:
            raise ConfigError(
                f"{STREAMS_PER_TRANSACTION_ENV} must be a whole number of at least 1, got {given!r}"
            )
        return int(given)
    row = conn.execute(
        "SELECT current_setting('max_locks_per_transaction')::int * current_setting('max_connections')::int"
    ).fetchone()
    return max(4, (row[0] if row is not None else 6400) // _SLOTS_PER_STREAM)


class PostgresSink:
    """Copies each flush into the open transaction; a commit merges, swaps and commits it.

    The loader's thread converts each flush into COPY's text format (:func:`encode`); a thread of
    the sink's own sends it, merges and commits, in order, one task at a time. So the server
    stores one flush while the loader reads and converts the next: :meth:`start_commit` hands a
    commit over and returns, and :meth:`commit_done` tells when it is durable (the loader echoes
    its states only then). At most ``QUEUED`` converted flushes wait for the thread. The tables
    are created or altered when the sink starts, before any record is converted, so that records
    are converted to the types the stored columns have.

    Many streams: a transaction touches at most ``streams_per_commit`` streams (see
    :data:`STREAMS_PER_TRANSACTION_ENV`), or the server runs out of lock slots. The set-up
    commits after each such group of tables. The loader commits its waiting states before a
    record or state would open one stream more (:func:`~ferryman.builtin._destination.load`), so
    the commits stay whole, each with its states. Only what one state or the last commit covers
    on its own past that number (a GLOBAL state over the held records of many streams, the
    swaps of many overwrite streams) is committed in parts, in several transactions: a
    destination killed between two parts has stored records whose state was not yet echoed,
    which the next attempt sends again (``append`` then stores them twice; see
    docs/destinations.md).
    """

    QUEUED = 1

    def __init__(self, config: PostgresConfig, tables: dict[StreamKey, Table]) -> None:
        self.config = config
        self.tables = tables
        self.buffers: dict[StreamKey, list[bytes]] = {key: [] for key in tables}
        self.records = 0
        self._conn = connect(config)
        # The database thread's: the streams the open transaction touched (their tables' ids),
        # the tables with rows in their batch table, and the batch tables made in it.
        self._touched: set[int] = set()
        self._batched: set[int] = set()
        self._made: set[int] = set()
        try:
            self.streams_per_commit = streams_per_transaction(self._conn)
            dedup = sum(1 for table in tables.values() if table.mode == "append_dedup")
            self._lasting_batches = dedup <= self.streams_per_commit
            catalog = read_tables(self._conn, tables.values())
            for number, table in enumerate(tables.values()):
                if number and number % self.streams_per_commit == 0:
                    self._conn.commit()  # the tables made so far: nothing but their set-up
                prepare(self._conn, table, catalog)
                if table.mode == "append_dedup":
                    prepare_dedup(self._conn, table, number, catalog, lasting=self._lasting_batches)
        except BaseException as exc:
            self._conn.close()
            failure = out_of_lock_slots(exc, getattr(self, "streams_per_commit", None))
            failure = ended_under_load(failure, config.describe())
            if failure is exc:
                raise
            raise failure from None
        self._holds = Holds(self._conn, list(tables.values()), config.spill_directory)
        self._tasks: queue.Queue[Callable[[], None] | None] = queue.Queue(self.QUEUED)
        self._failed: BaseException | None = None
        self._committed = threading.Event()
        self._committed.set()
        self._thread = threading.Thread(target=self._work, name=f"{NAME}-loader", daemon=True)
        self._thread.start()

    # --- the loader's side ---

    def flush(self, committing: bool = False) -> None:
        """Hand the buffers over; ``committing``: for a commit, which ends the transaction
        without the records a state does not cover yet (so they only go to the spill files)."""
        handed: dict[StreamKey, _Handed] = {}
        for key, lines in self.buffers.items():
            if lines:
                table = self.tables[key]
                if table.batch is not None:
                    handed[key] = (*encode_batch(table, lines), None)
                elif table.holds and table.covered < len(lines):  # the rest waits for a state
                    covered = encode(rows(table, lines[: table.covered])) if table.covered else None
                    handed[key] = (None, covered, encode(rows(table, lines[table.covered :])))
                    table.held += len(lines) - table.covered
                else:
                    handed[key] = (None, encode(rows(table, lines)), None)
                table.covered = 0
                self.buffers[key] = []
        if handed:
            self._submit(lambda: self._copy(handed, send_held=not committing))

    def storable_line(self, key: StreamKey, line: bytes) -> bytes:
        """No PostgreSQL text holds a lone surrogate: each column holding one is NULL."""
        return without_lone_surrogates(line, self.tables[key].columns)

    def checkpoint(self, scope: StreamKey | None) -> None:
        # A STREAM state concerns its stream alone (walking every stream for each was quadratic
        # for a source of thousands of streams, which sends a state per stream).
        keys = self.tables.keys() if scope is None else [scope]
        for key in keys:
            table = self.tables.get(key)
            if table is not None and table.holds:
                table.covered = len(self.buffers[key])
                if table.held:
                    table.held = 0
                    self._submit(functools.partial(self._unhold, table))

    def start_commit(self, complete: set[StreamKey]) -> None:
        """Flush, then commit in the background everything flushed so far (see commit_done)."""
        for key in complete:
            table = self.tables.get(key)
            if table is not None and table.holds:
                self.checkpoint(key)
                table.completed = True
        self.flush(committing=True)
        self.commit_done(block=True)  # one commit in flight at most
        repeated = {key: table.repeated for key, table in self.tables.items()}
        for table in self.tables.values():  # the batch tables' keys are the commit's from here on
            table.batch_keys = set()
            table.repeated = False
        self._committed.clear()
        self._submit(lambda: self._commit(repeated))

    def commit_done(self, block: bool) -> bool:
        """Whether the last commit started is durable (waiting for it when ``block``); raises
        what made the database work fail."""
        done = self._committed.wait() if block else self._committed.is_set()
        if self._failed is not None:
            raise self._failed
        return done

    def commit(self, complete: set[StreamKey]) -> None:
        self.start_commit(complete)
        self.commit_done(block=True)

    def leave_staged(self) -> dict[StreamKey, Unfinished]:
        left: dict[StreamKey, Unfinished] = {}
        self.commit_done(block=True)
        self._committed.clear()
        self._submit(lambda: left.update(self._leave_staged()))
        self.commit_done(block=True)
        return left

    def close(self) -> None:
        self._tasks.put(None)
        self._thread.join()
        self._conn.close()  # an open transaction is rolled back
        self._holds.close()

    def _submit(self, task: Callable[[], None]) -> None:
        if self._failed is not None:
            raise self._failed
        self._tasks.put(task)

    # --- the database's side (the sink's thread) ---

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            if self._failed is None:
                try:
                    task()
                except BaseException as exc:  # handed to the loader
                    failed = out_of_lock_slots(exc, self.streams_per_commit)
                    self._failed = ended_under_load(failed, self.config.describe())
            if self._failed is not None:
                self._committed.set()  # wakes the loader, to raise what failed

    def _copy(self, handed: dict[StreamKey, _Handed], send_held: bool) -> None:
        for key, (direct, encoded, _) in handed.items():
            table = self.tables[key]
            if direct is not None or encoded is not None:
                self._room(table)
                self._holds.before_other_copy()
            if direct is not None:  # first records of their keys, into a table empty at the start
                copy_encoded(self._conn, table, table.target, table.names, direct)
                table.pending += direct.rows
            if encoded is not None:
                if table.batch is None:
                    copy_encoded(self._conn, table, table.target, table.names, encoded)
                else:
                    if not self._lasting_batches and id(table) not in self._made:
                        create_batch(self._conn, table, lasting=False)
                        self._made.add(id(table))
                    copy_encoded(self._conn, table, table.batch, batch_names(table), encoded)
                    self._batched.add(id(table))
                table.pending += encoded.rows
        for key, (_, _, held) in handed.items():  # last: nothing else comes after the savepoint
            if held is not None:
                table = self.tables[key]
                # Held records wait in their spill file alone rather than end the transaction.
                send = send_held and self._has_room(table)
                if send:
                    self._touched.add(id(table))
                self._holds.keep(table, held, send=send)

    def _unhold(self, table: Table) -> None:
        """A state covers the held records: they join the others, in the open transaction."""
        if table.holding:
            self._room(table)
        table.pending += self._holds.cover(table)

    def _has_room(self, table: Table) -> bool:
        return id(table) in self._touched or len(self._touched) < self.streams_per_commit

    def _room(self, table: Table) -> None:
        """Make room for the open transaction to touch ``table``'s stream: past the number of
        streams it may touch, what it holds is committed first, as a part of the commit to come."""
        if not self._has_room(table):
            self._holds.before_other_copy()  # records no state covers are not committed
            self._merge(repeated=None)
            self._end_transaction()
        self._touched.add(id(table))

    def _merge(self, repeated: dict[StreamKey, bool] | None) -> None:
        """Merge each batch table that holds rows (``repeated``: whether each may hold a key
        twice; None: any may)."""
        for key, table in self.tables.items():
            if id(table) in self._batched:
                merge_batch(self._conn, table, True if repeated is None else repeated[key])
        self._batched.clear()

    def _end_transaction(self, swapped: tuple[Table, ...] = ()) -> None:
        """Commit; ``swapped``: the staging tables that took their tables' place in it."""
        self._conn.commit()
        for table in self.tables.values():
            if table.pending:
                self.records += table.pending
                if table.staging is not None:
                    table.staged += table.pending
                table.pending = 0
        for table in swapped:
            table.staging = None
        self._touched.clear()
        self._made.clear()

    def _commit(self, repeated: dict[StreamKey, bool]) -> None:
        conn = self._conn
        self._holds.before_other_copy()  # records no state covers are not committed
        self._merge(repeated)
        swapped: list[Table] = []
        for table in self.tables.values():
            if table.staging is not None and table.completed:
                if not self._has_room(table):
                    self._end_transaction(tuple(swapped))
                    swapped = []
                self._touched.add(id(table))
                conn.execute(f"DROP TABLE IF EXISTS {quote(table.schema)}.{quote(table.name)}")
                conn.execute(f"ALTER TABLE {table.target} RENAME TO {quote(table.name)}")
                swapped.append(table)
        self._end_transaction(tuple(swapped))
        self._committed.set()

    def _leave_staged(self) -> dict[StreamKey, Unfinished]:
        left: dict[StreamKey, Unfinished] = {}
        gone = []  # staging tables nobody can resume: a sync without a sync_id
        for key, table in self.tables.items():
            if not table.holds or table.completed:
                continue
            if not table.overwrite:  # the held rows go with the spill file
                if table.holding:
                    left[key] = Unfinished(False, 0, table.holding)
                continue
            if table.staging is None:
                continue
            if table.sync_id is None:
                gone.append(table)
                left[key] = Unfinished(True, 0, table.holding + table.staged)
            else:
                left[key] = Unfinished(True, table.staged, table.holding)
            self.records -= table.staged
        if gone:
            for table in gone:
                self._room(table)
                self._conn.execute(f"DROP TABLE IF EXISTS {table.target}")
            self._end_transaction()
        self._committed.set()
        return left


def write(config: PostgresConfig, catalog: list[ConfiguredStream], out: Output) -> None:
    require_spill_directory(config)
    tables = {stream.key: table_for(stream, config.schema) for stream in catalog}
    refuse_shared_tables(catalog, tables)
    sink = PostgresSink(config, tables)
    try:
        load(NAME, sink, out)
    finally:
        sink.close()
    out.log("INFO", f"{NAME}: loaded {sink.records} records into {len(tables)} tables")


CONNECTOR = Connector(
    name=NAME,
    specification=SPECIFICATION,
    spec_extra={
        "supportsIncremental": True,
        "supported_destination_sync_modes": list(MODES),
    },
    parse_config=parse_config,
    check=check,
    write=write,
)

if __name__ == "__main__":
    run(CONNECTOR)
