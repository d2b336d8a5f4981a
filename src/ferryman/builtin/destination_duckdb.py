"""destination-duckdb: Ferryman's embedded default destination, one DuckDB table per stream.

Config::

    path                  the DuckDB database file (required; created with its parent
                          directories; a relative path is relative to the working directory)
    schema                the schema for streams without a namespace (default "main"); a
                          stream's namespace, when it has one, is its schema
    lock_timeout_seconds  how long to wait for a database file another process holds before
                          failing (default 3600, at most 86400)

Tables are named after their streams and have Airbyte's typed shape (``docs/destinations.md``,
:mod:`ferryman.builtin._columns`): ``_airbyte_raw_id``, ``_airbyte_extracted_at``,
``_airbyte_meta``, ``_airbyte_generation_id``, then one typed column per top-level property of
the stream's JSON schema. A value that does not fit its column is stored as NULL and listed in
``_airbyte_meta``; so is one holding a lone UTF-16 surrogate escape, which DuckDB's JSON reader
refuses (:mod:`ferryman.builtin._refused`). A new property adds a column; a widening type change
alters the column.

Sync modes:

* ``append`` adds this sync's records to the table. A commit loads the records before the
  stream's last state; those after it wait in a spill file of their own (the tail) until a later
  state covers them or the stream completes, and are dropped otherwise (the next attempt resumes
  from that state and sends them again). When nothing else waits to load, the tail becomes the
  load spill without a copy.
* ``append_dedup`` upserts on the primary key (the configured one, else the source's): for
  each key the record with the latest cursor value wins (the record received last when there is
  no cursor column, or on a tie), whether it arrived in this sync or earlier; a winning record
  whose ``_ab_cdc_deleted_at`` is set deletes the key's row. Nothing is held after the last
  state: a retry's copies of what a failed attempt merged replace it.
  A record without a usable value for a key field (missing, null, or not of the key's type)
  fails the sync with a ``config_error`` before anything of its commit is stored: it would
  otherwise become a row no later record can replace.
* ``overwrite`` writes the sync's records into a staging table of its own
  (``_ferryman_staging_<stream>_r<token>_s<sync_id>``, the token random for each process;
  without a ``sync_id``, ``..._r<token>``), whose owner holds a lock on a file beside the
  database (:mod:`ferryman.builtin._duckdb_staging`). A commit loads into it the records before
  the stream's last state (a STREAM state for it, or any GLOBAL or LEGACY state); those after it
  wait in the tail, as under ``append``. The old table is replaced by the staging table, in one
  transaction, only when a TRACE ``STREAM_STATUS`` message marks the stream ``COMPLETE`` (sent
  once the source has succeeded). Otherwise the old table is kept as it was, what came after the
  last state is dropped, a warning is logged, and the staging table is left to the sync's next
  attempt: a later process with the same ``sync_id`` (the job) takes it over once its owner is
  gone (its lock can be taken) and resumes filling it; any other sync drops it. A RESET (null
  states, no records, COMPLETE) leaves an empty table. An attempt whose table already holds its
  sync's rows (the stream completed, then the attempt failed; or an earlier Ferryman swapped at
  the first state) writes straight into it.

Sharing the file: DuckDB lets one process at a time write to a database file, and many syncs
may share one (see :mod:`ferryman.builtin._duckdb_file`). Records are buffered per stream and,
when the buffers are full, appended to a private spill file per stream. A commit opens the
database unless it is still open (waiting with backoff while another process holds it, logging
once that it waits, failing after ``lock_timeout_seconds``), loads each stream's spill file with
one ``INSERT ... SELECT`` over ``read_ndjson_objects`` (no line limit: the object size limit is
raised to the longest record), renames the staging tables that are due and commits. The
database is closed after a commit when another destination waits for it, and whenever the input
has been quiet for a moment. States are released as described in
:mod:`ferryman.builtin._destination`; a state is echoed only after the commit that covers every
record received before it, and a commit checks that DuckDB read as many rows as it was given
records, failing the sync (naming the stream and the record size) when it did not.
TRACE messages other than the COMPLETE stream statuses are ignored.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ferryman.builtin._catalog import ConfiguredStream, StreamKey
from ferryman.builtin._columns import quote
from ferryman.builtin._destination import Unfinished, load, refuse_shared_tables
from ferryman.builtin._duckdb_file import SharedFile, open_database
from ferryman.builtin._duckdb_staging import StagingLocks
from ferryman.builtin._duckdb_tables import MODES, Table, load_spills, prepare, read_catalog, table_for
from ferryman.builtin._refused import without_lone_surrogates
from ferryman.builtin._runtime import (
    ConfigError,
    Connector,
    Output,
    object_schema,
    require_int,
    require_str,
    run,
)
from ferryman.builtin._spill import Spill, SpillError

NAME = "destination-duckdb"
LOCK_TIMEOUT_S = 3600
MAX_LOCK_TIMEOUT_S = 86_400  # a sync waiting longer than a day for a lock is stuck, not patient


@dataclass(frozen=True)
class DuckDBConfig:
    path: str
    schema: str
    lock_timeout_s: int = LOCK_TIMEOUT_S


def parse_config(raw: dict[str, Any]) -> DuckDBConfig:
    # ``destination_path`` is Airbyte's name for it: what its API clients send for a duckdb destination.
    path = require_str(raw, "path" if "path" in raw or "destination_path" not in raw else "destination_path")
    if path == ":memory:":
        raise ConfigError("config field 'path' must name a file: an in-memory database ends with the sync")
    return DuckDBConfig(
        path=os.path.expanduser(path),
        schema=require_str(raw, "schema", "main"),
        lock_timeout_s=require_int(raw, "lock_timeout_seconds", LOCK_TIMEOUT_S, maximum=MAX_LOCK_TIMEOUT_S),
    )


SPECIFICATION = object_schema(
    {
        "path": {
            "type": "string",
            "minLength": 1,
            "description": "DuckDB database file; relative paths start from the working directory.",
        },
        "destination_path": {
            "type": "string",
            "minLength": 1,
            "description": "Airbyte's name for path: used when path is not given.",
        },
        "schema": {
            "type": "string",
            "minLength": 1,
            "default": "main",
            "description": "Schema for streams without a namespace.",
        },
        "lock_timeout_seconds": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_LOCK_TIMEOUT_S,
            "default": LOCK_TIMEOUT_S,
            "description": "How long to wait while another process (another sync, a DuckDB shell)"
            " holds the database file before failing.",
        },
    },
    required=(),
    title="DuckDB destination",
)


def check(config: DuckDBConfig) -> str | None:
    con = open_database(config.path, config.lock_timeout_s, on_wait=lambda _: None)
    with con:
        table = f"{quote(config.schema)}.{quote('_ferryman_check_' + uuid.uuid4().hex)}"
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(config.schema)}")
        con.execute(f"CREATE TABLE {table} (probe INTEGER)")
        try:
            con.execute(f"INSERT INTO {table} VALUES (1)")
            row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        finally:
            con.execute(f"DROP TABLE IF EXISTS {table}")
        if row is None or row[0] != 1:
            raise RuntimeError(f"could not read back a test row from {config.path}")
    return None


class DuckDBSink:
    """Buffers RECORD lines, spills them, and loads them into DuckDB at each commit."""

    def __init__(self, config: DuckDBConfig, tables: dict[StreamKey, Table], out: Output) -> None:
        self.config = config
        self.tables = tables
        self.out = out
        self.buffers = {key: table.lines for key, table in tables.items()}
        self.records = 0
        self.prepared = False
        self.waited = False
        self.file = SharedFile(config.path, config.lock_timeout_s, self._waiting)
        self.directory = str(Path(config.path).parent)
        self.locks = StagingLocks(config.path)

    def flush(self) -> None:
        for table in self.tables.values():
            if table.lines:
                self._spill(table)

    def storable_line(self, key: StreamKey, line: bytes) -> bytes:
        """DuckDB's JSON reader refuses a lone surrogate too: each column holding one is NULL."""
        return without_lone_surrogates(line, self.tables[key].columns)

    def _spill(self, table: Table) -> None:
        lines = table.lines
        if table.holds and table.covered < len(lines):  # the rest waits for a state in the tail
            if table.covered:
                self._append(table, lines[: table.covered], tail=False)
            self._append(table, lines[table.covered :], tail=True)
        else:
            self._append(table, lines, tail=False)
        table.covered = 0
        lines.clear()

    def _append(self, table: Table, lines: list[bytes], tail: bool) -> None:
        count, longest = len(lines), max(map(len, lines))
        if table.dedup:
            data = b"".join([b'{"s":%d,"m":%b}\n' % item for item in enumerate(lines, table.received)])
        else:
            lines.append(b"")  # a newline after the last line too, without another copy
            data = b"\n".join(lines)
        with self._spilling(table):
            if tail:
                table.tail = table.tail or Spill(self.directory)
                table.tail.append(data, count, longest + 32)
            else:
                table.spill = table.spill or Spill(self.directory)
                table.spill.append(data, count, longest + 32)
        table.received += count

    @contextmanager
    def _spilling(self, table: Table) -> Iterator[None]:
        """A spill file that cannot be written fails the sync in one line saying where and what to
        do; the rows committed so far stay, and the next attempt resumes from the last state."""
        try:
            yield
        except SpillError as exc:
            raise exc.explained(
                table.label,
                "cannot spill its records (beside the database file)",
                "free space on that disk or move the database file to one with more room",
            ) from None

    def checkpoint(self, scope: StreamKey | None) -> None:
        # A STREAM state concerns its stream alone: walking every stream for each of them was
        # quadratic for a source of thousands of streams, which sends a state per stream.
        covered = self.tables.values() if scope is None else [self.tables.get(scope)]
        for table in covered:
            if table is not None and table.holds:
                self._cover(table)

    def _cover(self, table: Table) -> None:
        """Every record the stream received so far goes with the next commit."""
        table.covered = len(table.lines)
        if table.tail is None or not table.tail.lines:
            return
        if table.spill is None or not table.spill.lines:  # no copy: the tail becomes the spill
            if table.spill is not None:
                table.spill.close()
            table.spill, table.tail = table.tail, None
        else:
            with self._spilling(table):
                table.spill.take(table.tail)
            table.tail.close()  # an empty file need not hold a descriptor (see _spill)
            table.tail = None

    def _pending(self) -> list[Table]:
        return [table for table in self.tables.values() if table.spill is not None and table.spill.lines]

    def commit(self, complete: set[StreamKey]) -> None:
        self.flush()
        for key in complete:
            table = self.tables.get(key)
            if table is not None and table.holds:
                self._cover(table)
                table.completed = True
        pending = self._pending()
        if self.prepared and not pending and not self._due():
            return
        swapped: list[tuple[str, str]] = []  # their lock files go once the swap is committed
        with self._transaction(lambda: self._release(swapped)) as con:
            if not self.prepared:
                catalog = read_catalog(con)  # once, not per stream: see _duckdb_tables.Catalog
                for table in self.tables.values():
                    warning = prepare(con, table, self.locks, catalog)
                    if warning is not None:
                        self.out.log("WARN", f"{NAME}: {warning}")
            due = self._due()  # after prepare: a resumed sync's table has no staging
            load_spills(con, [(table, table.spill) for table in pending if table.spill is not None])
            for table in due:
                con.execute(f"DROP TABLE IF EXISTS {quote(table.schema)}.{quote(table.name)}")
                con.execute(f"ALTER TABLE {table.target} RENAME TO {quote(table.name)}")
                swapped.append((table.schema, str(table.staging)))
        self.prepared = True
        for table in pending:
            assert table.spill is not None
            self.records += table.spill.lines
            if table.staging is not None:
                table.staged += table.spill.lines
            # Closed, not emptied: a stream holds a descriptor only while records wait to load,
            # so thousands of streams do not hold thousands of files between their commits.
            table.spill.close()
            table.spill = None
        for table in due:
            table.staging = None

    def _due(self) -> list[Table]:
        """The overwrite streams whose staging table replaces their table at this commit."""
        return [table for table in self.tables.values() if table.staging is not None and table.completed]

    def leave_staged(self) -> dict[StreamKey, Unfinished]:
        left: dict[StreamKey, Unfinished] = {}
        gone: list[Table] = []  # staging tables nobody can resume: a sync without a sync_id
        for key, table in self.tables.items():
            if not table.holds or table.completed:
                continue
            dropped = table.tail.lines if table.tail is not None else 0
            if table.tail is not None:
                table.tail.clear()
            if not table.overwrite:
                if dropped:
                    left[key] = Unfinished(False, 0, dropped)
                continue
            if table.staging is None:  # it writes into a table an earlier attempt put in place
                continue
            if table.sync_id is None:
                gone.append(table)
                left[key] = Unfinished(True, 0, dropped + table.staged)
            else:
                left[key] = Unfinished(True, table.staged, dropped)
            self.records -= table.staged
        if gone and self.prepared:
            dropped_tables = [(table.schema, str(table.staging)) for table in gone]
            with self._transaction(lambda: self._release(dropped_tables)) as con:
                for table in gone:
                    con.execute(f"DROP TABLE IF EXISTS {table.target}")
        return left

    def _release(self, names: list[tuple[str, str]]) -> None:
        for schema, name in names:
            self.locks.release(schema, name)

    @contextmanager
    def _transaction(
        self, committed: Callable[[], None] = lambda: None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """``committed`` runs after the commit, while the database is still open (as lock files
        are only ever removed: see :mod:`ferryman.builtin._duckdb_staging`)."""
        con = self.file.connection()
        try:
            con.execute("BEGIN TRANSACTION")
            yield con
            con.execute("COMMIT")
        except BaseException:
            self.file.let_go()  # closing rolls the transaction back
            raise
        committed()
        self.file.offer()

    def _waiting(self, reason: str) -> None:
        if self.waited:  # once per sync: syncs sharing a file may take turns at every commit
            return
        self.waited = True
        self.out.log(
            "INFO",
            f"{NAME}: waiting for {self.config.path}, which another process holds"
            f" (up to {self.config.lock_timeout_s}s): {reason}",
        )
        self.out.flush()

    def close(self) -> None:
        if not self.prepared:  # the first commit never came or failed: no staging table exists
            for table in self.tables.values():
                if table.staging is not None:
                    self.locks.release(table.schema, table.staging)
        self.locks.close()  # a staging table left to the job's next attempt keeps its file
        self.file.close()
        for table in self.tables.values():
            for spill in (table.spill, table.tail):
                if spill is not None:
                    spill.close()


def write(config: DuckDBConfig, catalog: list[ConfiguredStream], out: Output) -> None:
    tables = {stream.key: table_for(stream, config.schema) for stream in catalog}
    refuse_shared_tables(catalog, tables, ascii_case=True)
    sink = DuckDBSink(config, tables, out)
    try:
        load(NAME, sink, out, on_quiet=sink.file.let_go)
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
