"""destination-duckdb: Ferryman's embedded default destination, one DuckDB table per stream.

Config::

    path     the DuckDB database file (required; created with its parent directories;
             a relative path is relative to the current working directory)
    schema   the schema for streams without a namespace (default "main"); a stream's
             namespace, when it has one, is its schema

Tables are named after their streams and hold, per record: ``_airbyte_raw_id`` (a random UUID),
``_airbyte_extracted_at`` (the record's ``emitted_at``, TIMESTAMPTZ), ``_airbyte_data`` (the
record's ``data``, JSON) and, when the stream has a primary key, one column per key field
(named after its path joined by ``_``, typed from the stream's JSON schema: BIGINT, DOUBLE,
BOOLEAN, else VARCHAR; a value that does not fit the type is stored as NULL).

Sync modes:

* ``append`` adds this sync's records to the table.
* ``append_dedup`` upserts on the primary key (the configured one, else the source's): for
  each key the record received last wins, and replaces any row already stored with that key.
* ``overwrite`` writes the sync's records into a staging table (``_ferryman_staging_<stream>``,
  dropped and recreated when the sync starts). The old table is replaced by the staging table,
  in one transaction, when the first state covering the stream is committed (a STREAM state
  for it, or any GLOBAL or LEGACY state); records that arrive after that go straight to the
  table. At the end of the input, a stream not yet replaced is replaced only if a TRACE
  ``STREAM_STATUS`` message marked it ``COMPLETE`` (sent once the source has succeeded);
  otherwise its staging table is dropped, the old table is kept as it was, and a warning is
  logged. So a sync whose source fails, or that is killed, before a covering state never puts
  partial data in place of a table; a RESET (null states, no records) leaves an empty table.

Loading: records are buffered per stream; a flush writes each stream's buffered lines to a
scratch file and runs one ``INSERT ... SELECT`` over ``read_csv`` of that file (one column per
line: a JSON line cannot contain the control character used as delimiter), extracting the
fields with DuckDB's JSON functions. Everything runs in a transaction that is committed when
states are released (see :mod:`ferryman.builtin._destination`); a state is echoed only after
the commit that covers every record received before it. TRACE messages other than the COMPLETE
stream statuses are ignored.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from ferryman.builtin._catalog import ConfiguredStream, StreamKey
from ferryman.builtin._destination import load
from ferryman.builtin._runtime import ConfigError, Connector, Output, object_schema, require_str, run

NAME = "destination-duckdb"
MODES = ("append", "overwrite", "append_dedup")
_SCHEMA_TYPES = {"integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}
_CSV = "delim='\x01', quote='', escape='', header=false, auto_detect=false"


@dataclass(frozen=True)
class DuckDBConfig:
    path: str
    schema: str


def parse_config(raw: dict[str, Any]) -> DuckDBConfig:
    return DuckDBConfig(
        path=os.path.expanduser(require_str(raw, "path")),
        schema=require_str(raw, "schema", "main"),
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
    },
    required=("path",),
    title="DuckDB destination",
)


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(config: DuckDBConfig) -> duckdb.DuckDBPyConnection:
    if config.path != ":memory:":
        Path(config.path).parent.mkdir(parents=True, exist_ok=True)
    # Commits only sync the write-ahead log; the costly checkpoint (compressing what was loaded
    # into the database file) then runs once, when the connection closes, not on every commit.
    # The scratch file is rewritten under the same name for every batch: never cache it.
    return duckdb.connect(
        config.path, config={"checkpoint_threshold": "1GB", "enable_external_file_cache": False}
    )


def check(config: DuckDBConfig) -> str | None:
    with connect(config) as con:
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


class Scratch:
    """The file each batch of lines is written to for ``read_csv``.

    On Linux the file is unlinked at once and read through ``/proc/self/fd``, so it disappears
    with the process even when the process is killed.
    """

    def __init__(self) -> None:
        self.fd, named = tempfile.mkstemp(prefix="ferryman-duckdb-", suffix=".lines")
        self.path = f"/proc/self/fd/{self.fd}"
        if os.path.exists(self.path):
            os.unlink(named)
            self._named: str | None = None
        else:
            self.path = self._named = named

    def replace(self, data: bytes) -> None:
        os.ftruncate(self.fd, 0)
        view, offset = memoryview(data), 0
        while offset < len(data):
            offset += os.pwrite(self.fd, view[offset:], offset)

    def close(self) -> None:
        os.close(self.fd)
        if self._named is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._named)


@dataclass
class _Table:
    schema: str
    name: str
    mode: str
    keys: list[tuple[str, str]]  # (column, SQL type), in primary-key order
    paths: list[str]  # JSON paths inside a RECORD line: emitted_at, data, then the keys
    staging: str | None = None
    staged: int = 0  # records written to the staging table
    lines: list[bytes] = field(default_factory=list)  # the loader's buffer for this stream

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
    return _Table(stream.namespace or default_schema, stream.name, stream.destination_sync_mode, keys, paths)


class DuckDBSink:
    """Loads buffered RECORD lines into DuckDB tables; see the module docstring."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, tables: dict[StreamKey, _Table], scratch: Scratch
    ) -> None:
        self.con = con
        self.tables = tables
        self.scratch = scratch
        self.buffers = {key: table.lines for key, table in tables.items()}
        self.records = 0
        for table in tables.values():
            self._prepare(table)
        self.con.execute("BEGIN TRANSACTION")

    def _prepare(self, table: _Table) -> None:
        con = self.con
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(table.schema)}")
        definition = ", ".join(f"{quote(column)} {kind}" for column, kind in table.columns)
        if table.mode == "overwrite":
            table.staging = f"_ferryman_staging_{table.name}"
            con.execute(f"DROP TABLE IF EXISTS {table.target}")
            con.execute(f"CREATE TABLE {table.target} ({definition})")
            return
        con.execute(f"CREATE TABLE IF NOT EXISTS {table.target} ({definition})")
        existing = {
            row[0]
            for row in con.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = ? AND table_name = ?",
                [table.schema, table.name],
            ).fetchall()
        }
        for column, kind in table.columns:
            if column not in existing:
                con.execute(f"ALTER TABLE {table.target} ADD COLUMN {quote(column)} {kind}")

    def flush(self) -> None:
        for table in self.tables.values():
            if table.lines:
                self.records += len(table.lines)
                if table.staging is not None:
                    table.staged += len(table.lines)
                self._insert(table)
                table.lines.clear()

    def commit(self, scopes: set[StreamKey] | None) -> None:
        self.flush()
        for key, table in self.tables.items():
            if table.staging is not None and (scopes is None or key in scopes):
                final = f"{quote(table.schema)}.{quote(table.name)}"
                self.con.execute(f"DROP TABLE IF EXISTS {final}")
                self.con.execute(f"ALTER TABLE {table.target} RENAME TO {quote(table.name)}")
                table.staging = None
        self.con.execute("COMMIT")
        self.con.execute("BEGIN TRANSACTION")

    def drop_staged(self) -> dict[StreamKey, int]:
        dropped: dict[StreamKey, int] = {}
        for key, table in self.tables.items():
            if table.staging is not None:
                self.con.execute(f"DROP TABLE IF EXISTS {table.target}")
                table.staging = None
                dropped[key] = table.staged
                self.records -= table.staged
        if dropped:
            self.con.execute("COMMIT")
            self.con.execute("BEGIN TRANSACTION")
        return dropped

    def _insert(self, table: _Table) -> None:
        dedup = table.mode == "append_dedup"
        if dedup:
            self.scratch.replace(b"".join([b"%d\x01%b\n" % item for item in enumerate(table.lines)]))
        else:
            table.lines.append(b"")
            self.scratch.replace(b"\n".join(table.lines))
        names = ", ".join(quote(column) for column, _ in table.columns)
        values = [
            "gen_random_uuid()",
            "to_timestamp(TRY_CAST(x[1] AS DOUBLE) / 1000)",
            *(f"TRY_CAST(x[{i + 3}] AS {kind})" for i, (_, kind) in enumerate(table.keys)),
            "x[2]::JSON",
        ]
        select = ", ".join(
            f"{value} AS {quote(column)}" for value, (column, _) in zip(values, table.columns, strict=True)
        )
        paths = "[" + ", ".join(_literal(path) for path in table.paths) + "]"
        csv_columns = "{'_ferryman_seq': 'BIGINT', 'l': 'VARCHAR'}" if dedup else "{'l': 'VARCHAR'}"
        source = (
            f"(SELECT {'_ferryman_seq, ' if dedup else ''}json_extract_string(l, {paths}) AS x"
            f" FROM read_csv($scratch, columns={csv_columns}, {_CSV}))"
        )
        params = {"scratch": self.scratch.path}
        if not dedup:
            self.con.execute(f"INSERT INTO {table.target} ({names}) SELECT {select} FROM {source}", params)
            return
        keys = ", ".join(quote(column) for column, _ in table.keys)
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE _ferryman_batch AS SELECT {select}, _ferryman_seq FROM {source}"
            f" QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY _ferryman_seq DESC) = 1",
            params,
        )
        match = " AND ".join(
            f"{table.target}.{quote(column)} IS NOT DISTINCT FROM b.{quote(column)}"
            for column, _ in table.keys
        )
        self.con.execute(f"DELETE FROM {table.target} USING _ferryman_batch AS b WHERE {match}")
        self.con.execute(
            f"INSERT INTO {table.target} ({names}) SELECT {names} FROM _ferryman_batch ORDER BY _ferryman_seq"
        )
        self.con.execute("DROP TABLE _ferryman_batch")


def write(config: DuckDBConfig, catalog: list[ConfiguredStream], out: Output) -> None:
    tables = {stream.key: _table_for(stream, config.schema) for stream in catalog}
    owners: dict[tuple[str, str], str] = {}
    for stream in catalog:
        table = tables[stream.key]
        owner = owners.setdefault((table.schema, table.name), stream.label)
        if owner != stream.label:
            raise ConfigError(f"streams '{owner}' and '{stream.label}' would share table {table.target}")
    scratch = Scratch()
    try:
        with connect(config) as con:
            sink = DuckDBSink(con, tables, scratch)
            load(NAME, sink, out)
        out.log("INFO", f"{NAME}: loaded {sink.records} records into {len(tables)} tables")
    finally:
        scratch.close()


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
