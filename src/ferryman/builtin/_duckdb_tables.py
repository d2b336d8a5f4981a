"""destination-duckdb's tables: their columns, how a stream's spilled records are loaded into one.

Records are read with ``read_ndjson_objects``, whose only limit on a line (the object size) is
raised to the longest record of the batch, and their fields extracted with DuckDB's JSON
functions. Under append_dedup each spilled line is ``[sequence number, RECORD line]`` so the
last record for a key wins. :func:`load_spill` checks that DuckDB read as many records as the
spill holds: a state is echoed only after that check.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

import duckdb

from ferryman.builtin._catalog import ConfiguredStream
from ferryman.builtin._duckdb_file import Spill
from ferryman.builtin._runtime import ConfigError

MODES = ("append", "overwrite", "append_dedup")
_SCHEMA_TYPES = {"integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}
_STAGING_PREFIX = "_ferryman_staging_"
_OBJECT_SIZE = 16 << 20  # read_ndjson_objects' own default limit; raised for longer records


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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
class Table:
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


def table_for(stream: ConfiguredStream, default_schema: str) -> Table:
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
    table = Table(stream.label, stream.namespace or default_schema, stream.name, mode, keys, paths)
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
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(table.schema)}")
    definition = ", ".join(f"{quote(column)} {kind}" for column, kind in table.columns)
    if table.staging is not None:
        _drop_abandoned_staging(con, table)
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


def _rows(table: Table, spill: Spill) -> str:
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


def _insert(con: duckdb.DuckDBPyConnection, table: Table, spill: Spill) -> int:
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
