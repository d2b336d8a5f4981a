"""destination-duckdb: Ferryman's embedded default destination, one DuckDB table per stream.

Config::

    path                  the DuckDB database file (required; created with its parent
                          directories; a relative path is relative to the working directory)
    schema                the schema for streams without a namespace (default "main"); a
                          stream's namespace, when it has one, is its schema
    lock_timeout_seconds  how long to wait for a database file another process holds before
                          failing (default 3600)

Tables are named after their streams and hold, per record: ``_airbyte_raw_id`` (a random UUID),
``_airbyte_extracted_at`` (the record's ``emitted_at``, TIMESTAMPTZ), ``_airbyte_data`` (the
record's ``data``, JSON) and, when the stream has a primary key, one column per key field
(named after its path joined by ``_``, typed from the stream's JSON schema: BIGINT, DOUBLE,
BOOLEAN, else VARCHAR; under append and overwrite, a value that does not fit the type is stored
as NULL).

Sync modes:

* ``append`` adds this sync's records to the table.
* ``append_dedup`` upserts on the primary key (the configured one, else the source's): for
  each key the record received last wins, and replaces any row already stored with that key.
  A record without a usable value for a key field (missing, null, or not of the key's type)
  fails the sync with a ``config_error`` before anything of its commit is stored: it would
  otherwise become a row no later record can replace.
* ``overwrite`` writes the sync's records into a staging table (``_ferryman_staging_<stream>``,
  dropped and recreated by the sync's first commit). The old table is replaced by the staging
  table, in one transaction, when the first state covering the stream is committed (a STREAM
  state for it, or any GLOBAL or LEGACY state); records that arrive after that go straight to
  the table. At the end of the input, a stream not yet replaced is replaced only if a TRACE
  ``STREAM_STATUS`` message marked it ``COMPLETE`` (sent once the source has succeeded);
  otherwise its staging table is dropped, the old table is kept as it was, and a warning is
  logged. So a sync whose source fails, or that is killed, before a covering state never puts
  partial data in place of a table; a RESET (null states, no records) leaves an empty table.

Sharing the file: DuckDB lets one process at a time write to a database file, and many syncs
may share one. So the destination opens the file only to commit (see
:mod:`ferryman.builtin._duckdb_file`): records are buffered per stream and, when the buffers
are full, appended to a private spill file per stream; a commit opens the database (waiting
with backoff while another process holds it, logging once that it waits, failing after
``lock_timeout_seconds``), loads each stream's spill file with one ``INSERT ... SELECT`` over
``read_ndjson_objects`` (no line limit: the object size limit is raised to the longest record),
renames the staging tables that are due, commits and closes. States are released as described
in :mod:`ferryman.builtin._destination`; a state is echoed only after the commit that covers
every record received before it, and a commit checks that DuckDB stored as many rows as it
was given records, failing the sync (naming the stream and the record size) when it did not.
TRACE messages other than the COMPLETE stream statuses are ignored.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from ferryman.builtin._catalog import ConfiguredStream, StreamKey
from ferryman.builtin._destination import load
from ferryman.builtin._duckdb_file import Spill, open_database
from ferryman.builtin._runtime import (
    ConfigError,
    Connector,
    Output,
    object_schema,
    require_int,
    require_str,
    run,
)

NAME = "destination-duckdb"
MODES = ("append", "overwrite", "append_dedup")
LOCK_TIMEOUT_S = 3600
_SCHEMA_TYPES = {"integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}
_OBJECT_SIZE = 16 << 20  # read_ndjson_objects' own default limit; raised for longer records


@dataclass(frozen=True)
class DuckDBConfig:
    path: str
    schema: str
    lock_timeout_s: int = LOCK_TIMEOUT_S


def parse_config(raw: dict[str, Any]) -> DuckDBConfig:
    path = require_str(raw, "path")
    if path == ":memory:":
        raise ConfigError("config field 'path' must name a file: an in-memory database ends with the sync")
    return DuckDBConfig(
        path=os.path.expanduser(path),
        schema=require_str(raw, "schema", "main"),
        lock_timeout_s=require_int(raw, "lock_timeout_seconds", LOCK_TIMEOUT_S),
    )


SPECIFICATION = object_schema(
    {
        "path": {
            "type": "string",
            "minLength": 1,
            "description": "DuckDB database file; relative paths start from the working directory.",
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
            "default": LOCK_TIMEOUT_S,
            "description": "How long to wait while another process (another sync, a DuckDB shell)"
            " holds the database file before failing.",
        },
    },
    required=("path",),
    title="DuckDB destination",
)


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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


def _key_type(schema: dict[str, Any], path: list[str]) -> str:
    node: Any = schema
    for part in path:
        properties = node.get("properties") if isinstance(node, dict) else None
        node = properties.get(part) if isinstance(properties, dict) else None
    kinds = node.get("type") if isinstance(node, dict) else None
    kinds = [kinds] if isinstance(kinds, str) else kinds if isinstance(kinds, list) else []
    concrete = [kind for kind in kinds if kind != "null"]
    if len(concrete) == 1 and concrete[0] in _SCHEMA_TYPES:
        return _SCHEMA_TYPES[concrete[0]]
    return "VARCHAR"


class LoadError(Exception):
    """DuckDB did not store a batch of records as it was given them."""


@dataclass
class _Table:
    label: str
    schema: str
    name: str
    mode: str
    keys: list[tuple[str, str]]  # (column, SQL type), in primary-key order
    paths: list[str]  # JSON paths inside a RECORD line: emitted_at, data, then the keys
    staging: str | None = None  # while set, records go to this table, not to ``name``
    staged: int = 0  # records committed to the staging table
    received: int = 0  # records spilled so far; under append_dedup, their sequence numbers
    lines: list[bytes] = field(default_factory=list)  # the loader's buffer for this stream
    spill: Spill | None = None

    @property
    def dedup(self) -> bool:
        return self.mode == "append_dedup"

    @property
    def target(self) -> str:
        return f"{quote(self.schema)}.{quote(self.staging or self.name)}"

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [
            ("_airbyte_raw_id", "UUID"),
            ("_airbyte_extracted_at", "TIMESTAMPTZ"),
            *self.keys,
            ("_airbyte_data", "JSON"),
        ]


def _table_for(stream: ConfiguredStream, default_schema: str) -> _Table:
    if stream.destination_sync_mode not in MODES:
        raise ConfigError(
            f"stream '{stream.label}': destination_sync_mode "
            f"'{stream.destination_sync_mode}' is not supported (use one of {', '.join(MODES)})"
        )
    if stream.destination_sync_mode == "append_dedup" and not stream.primary_key:
        raise ConfigError(f"stream '{stream.label}': append_dedup needs a primary key")
    keys: list[tuple[str, str]] = []
    paths = ["$.record.emitted_at", "$.record.data"]
    for path in stream.primary_key:
        column = "_".join(path)
        if column.startswith("_airbyte_") or column in (name for name, _ in keys):
            raise ConfigError(f"stream '{stream.label}': primary key field '{column}' clashes with a column")
        keys.append((column, _key_type(stream.json_schema, path)))
        paths.append("$.record.data" + "".join('."' + part.replace('"', '\\"') + '"' for part in path))
    mode = stream.destination_sync_mode
    if mode == "append_dedup":  # spilled as [sequence number, RECORD line]
        paths = ["$[0]", *(path.replace("$", "$[1]", 1) for path in paths)]
    table = _Table(stream.label, stream.namespace or default_schema, stream.name, mode, keys, paths)
    if mode == "overwrite":
        table.staging = f"_ferryman_staging_{stream.name}"
    return table


def _prepare(con: duckdb.DuckDBPyConnection, table: _Table) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(table.schema)}")
    definition = ", ".join(f"{quote(column)} {kind}" for column, kind in table.columns)
    if table.staging is not None:
        con.execute(f"DROP TABLE IF EXISTS {table.target}")
        con.execute(f"CREATE TABLE {table.target} ({definition})")
        return
    con.execute(f"CREATE TABLE IF NOT EXISTS {table.target} ({definition})")
    existing = {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [table.schema, table.name],
        ).fetchall()
    }
    for column, kind in table.columns:
        if column not in existing:
            con.execute(f"ALTER TABLE {table.target} ADD COLUMN {quote(column)} {kind}")


def _rows(table: _Table, spill: Spill) -> str:
    """A SELECT of the table's columns (and, under dedup, the sequence number) from the spill."""
    base = 2 if table.dedup else 1  # x[1] is the sequence number under dedup
    values = [
        "gen_random_uuid()",
        f"to_timestamp(TRY_CAST(x[{base}] AS DOUBLE) / 1000)",
        *(f"TRY_CAST(x[{base + 2 + i}] AS {kind})" for i, (_, kind) in enumerate(table.keys)),
        f"x[{base + 1}]::JSON",
    ]
    select = ", ".join(
        f"{value} AS {quote(column)}" for value, (column, _) in zip(values, table.columns, strict=True)
    )
    if table.dedup:
        select += ", TRY_CAST(x[1] AS BIGINT) AS _ferryman_seq"
    paths = "[" + ", ".join(_literal(path) for path in table.paths) + "]"
    limit = max(_OBJECT_SIZE, spill.longest + 64)
    return (
        f"SELECT {select} FROM (SELECT json_extract_string(json, {paths}) AS x"
        f" FROM read_ndjson_objects($spill, maximum_object_size={limit}))"
    )


def _insert(con: duckdb.DuckDBPyConnection, table: _Table, spill: Spill) -> int:
    """Load the spill into the table; returns how many records DuckDB read from it."""
    names = ", ".join(quote(column) for column, _ in table.columns)
    params = {"spill": spill.path}
    if not table.dedup:
        row = con.execute(f"INSERT INTO {table.target} ({names}) {_rows(table, spill)}", params).fetchone()
        return int(row[0]) if row else 0
    keys = ", ".join(quote(column) for column, _ in table.keys)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _ferryman_batch AS"
        f" SELECT *, count(*) OVER () AS _ferryman_total FROM ({_rows(table, spill)})"
        f" QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY _ferryman_seq DESC) = 1",
        params,
    )
    missing = " OR ".join(f"{quote(column)} IS NULL" for column, _ in table.keys)
    total, bad = con.execute(
        f"SELECT max(_ferryman_total), min(_ferryman_seq) FILTER (WHERE {missing}) FROM _ferryman_batch"
    ).fetchall()[0]
    if bad is not None:
        fields = ", ".join(f"'{column}' ({kind})" for column, kind in table.keys)
        raise ConfigError(
            f"stream '{table.label}': record #{bad + 1} of this sync has no usable value for its"
            f" primary key {fields}: the field is missing, null or not of that type,"
            " so append_dedup cannot store it"
        )
    match = " AND ".join(f"{table.target}.{quote(c)} = b.{quote(c)}" for c, _ in table.keys)
    con.execute(f"DELETE FROM {table.target} USING _ferryman_batch AS b WHERE {match}")
    con.execute(
        f"INSERT INTO {table.target} ({names}) SELECT {names} FROM _ferryman_batch ORDER BY _ferryman_seq"
    )
    con.execute("DROP TABLE _ferryman_batch")
    return int(total or 0)


def _load_spill(con: duckdb.DuckDBPyConnection, table: _Table, spill: Spill) -> None:
    largest = f"the largest is {spill.longest:,} bytes"
    try:
        stored = _insert(con, table, spill)
    except duckdb.Error as exc:
        raise LoadError(
            f"stream '{table.label}': DuckDB could not load {spill.lines} records ({largest}): {exc}"
        ) from exc
    if stored != spill.lines:
        raise LoadError(
            f"stream '{table.label}': DuckDB stored {stored} of {spill.lines} records ({largest});"
            " no state covering them was confirmed"
        )


class DuckDBSink:
    """Buffers RECORD lines, spills them, and loads them into DuckDB at each commit."""

    def __init__(self, config: DuckDBConfig, tables: dict[StreamKey, _Table], out: Output) -> None:
        self.config = config
        self.tables = tables
        self.out = out
        self.buffers = {key: table.lines for key, table in tables.items()}
        self.records = 0
        self.prepared = False
        self.waited = False
        self.directory = str(Path(config.path).parent)
        Path(self.directory).mkdir(parents=True, exist_ok=True)

    def flush(self) -> None:
        for table in self.tables.values():
            if table.lines:
                self._spill(table)

    def _spill(self, table: _Table) -> None:
        lines = table.lines
        count, longest = len(lines), max(map(len, lines))
        if table.dedup:
            data = b"".join([b"[%d,%b]\n" % item for item in enumerate(lines, table.received)])
        else:
            lines.append(b"")  # a newline after the last line too, without another copy
            data = b"\n".join(lines)
        if table.spill is None:
            table.spill = Spill(self.directory)
        table.spill.append(data, count, longest + 32)
        table.received += count
        lines.clear()

    def _pending(self) -> list[_Table]:
        return [table for table in self.tables.values() if table.spill is not None and table.spill.lines]

    def commit(self, scopes: set[StreamKey] | None) -> None:
        self.flush()
        due = [
            table
            for key, table in self.tables.items()
            if table.staging is not None and (scopes is None or key in scopes)
        ]
        pending = self._pending()
        if self.prepared and not pending and not due:
            return
        with self._database() as con:
            con.execute("BEGIN TRANSACTION")
            if not self.prepared:
                for table in self.tables.values():
                    _prepare(con, table)
            for table in pending:
                assert table.spill is not None
                _load_spill(con, table, table.spill)
            for table in due:
                con.execute(f"DROP TABLE IF EXISTS {quote(table.schema)}.{quote(table.name)}")
                con.execute(f"ALTER TABLE {table.target} RENAME TO {quote(table.name)}")
            con.execute("COMMIT")
        self.prepared = True
        for table in pending:
            assert table.spill is not None
            self.records += table.spill.lines
            if table.staging is not None:
                table.staged += table.spill.lines
            table.spill.clear()
        for table in due:
            table.staging = None

    def drop_staged(self) -> dict[StreamKey, int]:
        left = {key: table for key, table in self.tables.items() if table.staging is not None}
        if not left:
            return {}
        with self._database() as con:
            con.execute("BEGIN TRANSACTION")
            for table in left.values():
                con.execute(f"DROP TABLE IF EXISTS {table.target}")
            con.execute("COMMIT")
        dropped: dict[StreamKey, int] = {}
        for key, table in left.items():
            table.staging = None
            dropped[key] = table.staged
            self.records -= table.staged
        return dropped

    @contextmanager
    def _database(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = open_database(self.config.path, self.config.lock_timeout_s, self._waiting)
        try:
            yield con
        finally:
            con.close()

    def _waiting(self, reason: str) -> None:
        if self.waited:  # once per sync: syncs sharing a file take turns at every commit
            return
        self.waited = True
        self.out.log(
            "INFO",
            f"{NAME}: waiting for {self.config.path}, which another process holds"
            f" (up to {self.config.lock_timeout_s}s): {reason}",
        )
        self.out.flush()

    def close(self) -> None:
        for table in self.tables.values():
            if table.spill is not None:
                table.spill.close()


def write(config: DuckDBConfig, catalog: list[ConfiguredStream], out: Output) -> None:
    tables = {stream.key: _table_for(stream, config.schema) for stream in catalog}
    owners: dict[tuple[str, str], str] = {}
    for stream in catalog:
        table = tables[stream.key]
        owner = owners.setdefault((table.schema, table.name), stream.label)
        if owner != stream.label:
            raise ConfigError(f"streams '{owner}' and '{stream.label}' would share table {table.target}")
    sink = DuckDBSink(config, tables, out)
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
