"""destination-duckdb's tables: their columns, how a stream's spilled records are loaded into one.

Tables have the typed shape of :mod:`ferryman.builtin._columns`. Records are read with
``read_ndjson_objects``, whose only limit on a line (the object size) is raised to the longest
record of the batch; each column's value is extracted with DuckDB's JSON functions and cast to
the column's type by the rules of ``docs/destinations.md`` (a value that does not fit is stored as
NULL and listed in ``_airbyte_meta``). Under append_dedup each spilled line is ``[sequence
number, RECORD line]``, so the latest record for a key wins. :func:`load_spill` checks that
DuckDB read as many records as the spill holds: a state is echoed only after that check.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace

import duckdb
import orjson

from ferryman.builtin._catalog import ConfiguredStream
from ferryman.builtin._columns import (
    Column,
    Kind,
    change,
    cursor_column,
    key_columns,
    merge_statements,
    quote,
    stream_columns,
    widen,
)
from ferryman.builtin._duckdb_file import Spill
from ferryman.builtin._runtime import ConfigError

MODES = ("append", "overwrite", "append_dedup")
SQL_TYPES: dict[Kind, str] = {
    "integer": "BIGINT",
    "number": "DOUBLE",
    "boolean": "BOOLEAN",
    "string": "VARCHAR",
    "date": "DATE",
    "timestamptz": "TIMESTAMPTZ",
    "timestamp": "TIMESTAMP",
    "time": "TIME",
    "timetz": "TIMETZ",
    "json": "JSON",
}
_STORED_KINDS: dict[str, Kind] = {
    **{sql: kind for kind, sql in SQL_TYPES.items()},
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "TIME WITH TIME ZONE": "timetz",
}
_AIRBYTE = [
    ("_airbyte_raw_id", "UUID"),
    ("_airbyte_extracted_at", "TIMESTAMPTZ"),
    ("_airbyte_meta", "JSON"),
    ("_airbyte_generation_id", "BIGINT"),
]
_STAGING_PREFIX = "_ferryman_staging_"
_OBJECT_SIZE = 16 << 20  # read_ndjson_objects' own default limit; raised for longer records


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_path(parts: tuple[str, ...] | list[str]) -> str:
    return "".join('."' + part.replace('"', '\\"') + '"' for part in parts)


class LoadError(Exception):
    """DuckDB did not store a batch of records as it was given them."""


@dataclass
class Table:
    label: str
    schema: str
    name: str
    mode: str
    columns: list[Column]  # the property columns; kinds become the stored ones in prepare()
    keys: list[Column]  # in primary-key order
    cursor: Column | None = None  # under append_dedup, the latest by this column wins
    generation_id: int = 0
    sync_id: int | None = None
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
    def definitions(self) -> list[tuple[str, str]]:
        return [*_AIRBYTE, *((column.name, SQL_TYPES[column.kind]) for column in self.columns)]

    def column(self, name: str) -> Column | None:
        return next((column for column in self.columns if column.name == name), None)


def table_for(stream: ConfiguredStream, default_schema: str) -> Table:
    if stream.destination_sync_mode not in MODES:
        raise ConfigError(
            f"stream '{stream.label}': destination_sync_mode "
            f"'{stream.destination_sync_mode}' is not supported (use one of {', '.join(MODES)})"
        )
    mode = stream.destination_sync_mode
    if mode == "append_dedup" and not stream.primary_key:
        raise ConfigError(f"stream '{stream.label}': append_dedup needs a primary key")
    columns = stream_columns(stream)
    table = Table(
        stream.label,
        stream.namespace or default_schema,
        stream.name,
        mode,
        columns,
        key_columns(stream, columns),
        cursor_column(stream, columns) if mode == "append_dedup" else None,
        stream.generation_id,
        stream.sync_id,
    )
    if mode == "overwrite":
        # One staging table per destination process: two syncs overwriting the same table at
        # once each swap in their own complete data (the last to commit wins), never a mix.
        table.staging = f"{_STAGING_PREFIX}{stream.name}_{os.getpid()}"
    return table


def _drop_abandoned_staging(con: duckdb.DuckDBPyConnection, table: Table) -> None:
    """Drop the staging tables of this stream left by destinations that died before their swap."""
    prefix = f"{_STAGING_PREFIX}{table.name}_"
    names = con.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = ? AND starts_with(table_name, ?)",
        [table.schema, prefix],
    ).fetchall()
    for (name,) in names:
        pid = name[len(prefix) :]
        if re.fullmatch(r"[0-9]+", pid) and not _alive(int(pid)):
            con.execute(f"DROP TABLE IF EXISTS {quote(table.schema)}.{quote(name)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, and belongs to someone else
    return True


def prepare(con: duckdb.DuckDBPyConnection, table: Table) -> None:
    """Create the table, or bring a stored one up to the stream's schema.

    New properties add columns; a column whose kind widens (see :func:`widen`) is altered; the
    kinds the table keeps become the ones records are loaded as.
    """
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(table.schema)}")
    definition = ", ".join(f"{quote(column)} {kind}" for column, kind in table.definitions)
    if table.staging is not None:
        _drop_abandoned_staging(con, table)
        con.execute(f"DROP TABLE IF EXISTS {table.target}")
        con.execute(f"CREATE TABLE {table.target} ({definition})")
        return
    con.execute(f"CREATE TABLE IF NOT EXISTS {table.target} ({definition})")
    stored: dict[str, str] = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = ? AND table_name = ?",
            [table.schema, table.name],
        ).fetchall()
    )
    for name, kind in _AIRBYTE:
        if name not in stored:
            con.execute(f"ALTER TABLE {table.target} ADD COLUMN {quote(name)} {kind}")
    columns = []
    for column in table.columns:
        if column.name not in stored:
            con.execute(
                f"ALTER TABLE {table.target} ADD COLUMN {quote(column.name)} {SQL_TYPES[column.kind]}"
            )
            columns.append(column)
            continue
        # A type Ferryman does not make (changed by hand) is given text and cast by DuckDB.
        kept = _STORED_KINDS.get(stored[column.name].upper(), "string")
        kind = widen(kept, column.kind)
        if kind != kept:
            using = f"to_json({quote(column.name)})" if kind == "json" else quote(column.name)
            con.execute(
                f"ALTER TABLE {table.target} ALTER COLUMN {quote(column.name)}"
                f" SET DATA TYPE {SQL_TYPES[kind]} USING {using}"
            )
        columns.append(replace(column, kind=kind))
    by_name = {column.name: column for column in columns}
    table.columns = columns
    table.keys = [by_name[key.name] for key in table.keys]
    table.cursor = by_name[table.cursor.name] if table.cursor is not None else None


def _value(kind: Kind, j: str, s: str) -> str:
    """The SQL of one column's value from its JSON (``j``) and its text (``s``, NULL for null)."""
    if kind == "string":
        return s
    if kind == "json":
        return f"CASE WHEN {s} IS NOT NULL THEN {j} END"
    if kind == "integer":
        double = f"TRY_CAST({s} AS DOUBLE)"
        return (
            f"CASE json_type({j}) WHEN 'UBIGINT' THEN TRY_CAST({s} AS BIGINT)"
            f" WHEN 'BIGINT' THEN TRY_CAST({s} AS BIGINT)"
            f" WHEN 'DOUBLE' THEN CASE WHEN {double} = trunc({double})"
            f" THEN TRY_CAST({double} AS BIGINT) END END"
        )
    if kind == "number":
        return f"CASE WHEN json_type({j}) IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN TRY_CAST({s} AS DOUBLE) END"
    if kind == "boolean":
        return f"CASE WHEN json_type({j}) = 'BOOLEAN' THEN TRY_CAST({s} AS BOOLEAN) END"
    return f"CASE WHEN json_type({j}) = 'VARCHAR' THEN TRY_CAST(trim({s}) AS {SQL_TYPES[kind]}) END"


def _rows(table: Table, spill: Spill) -> str:
    """A SELECT of the table's columns (and, under dedup, the sequence number) from the spill."""
    record = "$[1].record" if table.dedup else "$.record"  # under dedup: [sequence number, RECORD]
    paths = [f"{record}.emitted_at", f"{record}.meta.changes"]
    paths += [f"{record}.data{_json_path(column.path)}" for column in table.columns]
    inner = ["to_timestamp(TRY_CAST(s[1] AS DOUBLE) / 1000) AS _ts", "TRY_CAST(j[2] AS JSON[]) AS _changes"]
    changes = []
    for i, column in enumerate(table.columns, 3):
        inner.append(f"{_value(column.kind, f'j[{i}]', f's[{i}]')} AS _v{i}")
        if column.kind not in ("string", "json"):
            inner.append(f"s[{i}] IS NOT NULL AS _p{i}")
            entry = _literal(orjson.dumps(change(column.field)).decode())
            changes.append(f"CASE WHEN _p{i} AND _v{i} IS NULL THEN {entry}::JSON END")
    listed = "coalesce(_changes, []::JSON[])"
    if changes:
        listed = f"list_concat({listed}, list_filter([{', '.join(changes)}], lambda c: c IS NOT NULL))"
    sync_id = "NULL" if table.sync_id is None else str(table.sync_id)
    outer = [
        "gen_random_uuid() AS _airbyte_raw_id",
        "_ts AS _airbyte_extracted_at",
        f"json_object('changes', {listed}, 'sync_id', {sync_id}) AS _airbyte_meta",
        f"{table.generation_id}::BIGINT AS _airbyte_generation_id",
        *(f"_v{i} AS {quote(column.name)}" for i, column in enumerate(table.columns, 3)),
    ]
    if table.dedup:
        paths.append("$[0]")
        inner.append(f"TRY_CAST(s[{len(paths)}] AS BIGINT) AS _ferryman_seq")
        outer.append("_ferryman_seq")
    listed_paths = "[" + ", ".join(_literal(path) for path in paths) + "]"
    limit = max(_OBJECT_SIZE, spill.longest + 64)
    # Each record is parsed once: ``j`` holds its values as JSON, ``s`` their text, read off each
    # (small) value of ``j`` rather than by a second json_extract_string over the whole record.
    return (
        f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM ("
        "SELECT j, list_transform(j, lambda v: json_extract_string(v, '$')) AS s FROM ("
        f"SELECT json_extract(json, {listed_paths}) AS j"
        f" FROM read_ndjson_objects($spill, maximum_object_size={limit}))))"
    )


def _insert(con: duckdb.DuckDBPyConnection, table: Table, spill: Spill) -> int:
    """Load the spill into the table; returns how many records DuckDB read from it."""
    names = ", ".join(quote(column) for column, _ in table.definitions)
    params = {"spill": spill.path}
    if not table.dedup:
        row = con.execute(f"INSERT INTO {table.target} ({names}) {_rows(table, spill)}", params).fetchone()
        return int(row[0]) if row else 0
    keys = ", ".join(quote(column.name) for column in table.keys)
    order = "_ferryman_seq DESC"
    if table.cursor is not None:
        order = f"{quote(table.cursor.name)} DESC NULLS LAST, {order}"
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _ferryman_batch AS"
        f" SELECT *, count(*) OVER () AS _ferryman_total FROM ({_rows(table, spill)})"
        f" QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1",
        params,
    )
    missing = " OR ".join(f"{quote(column.name)} IS NULL" for column in table.keys)
    total, bad = con.execute(
        f"SELECT max(_ferryman_total), min(_ferryman_seq) FILTER (WHERE {missing}) FROM _ferryman_batch"
    ).fetchall()[0]
    if bad is not None:
        fields = ", ".join(f"'{column.field}' ({SQL_TYPES[column.kind]})" for column in table.keys)
        raise ConfigError(
            f"stream '{table.label}': record #{bad + 1} of this sync has no usable value for its"
            f" primary key {fields}: the field is missing, null or not of that type,"
            " so append_dedup cannot store it"
        )
    merge = merge_statements(table.target, "_ferryman_batch", table.columns, table.keys, table.cursor, names)
    for statement in merge:
        con.execute(statement)
    con.execute("DROP TABLE _ferryman_batch")
    return int(total or 0)


def load_spill(con: duckdb.DuckDBPyConnection, table: Table, spill: Spill) -> None:
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
