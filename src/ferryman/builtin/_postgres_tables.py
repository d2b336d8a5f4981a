"""destination-postgres's tables: their columns, and loading a stream's records into one.

Tables have the typed shape of :mod:`ferryman.builtin._columns`, with PostgreSQL types. Records
are decoded and converted in Python by the shared rules (:data:`CONVERTERS`), then sent with
``COPY ... FROM STDIN``; ``_airbyte_raw_id`` comes from the column's default,
``gen_random_uuid()``. Under append_dedup the rows go to a temporary batch table first and are
merged into the table at each commit; under overwrite to a staging table, which replaces the
table once the stream is done. A staging table belongs to the session holding the advisory lock
named after it: one whose lock nobody holds was left by a destination that died, wherever it
ran, and the next overwrite of the stream drops it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg

from ferryman.builtin._catalog import ConfiguredStream
from ferryman.builtin._columns import (
    CONVERTERS,
    MAX_NAME,
    SERIALIZATION_ERROR,
    Column,
    Kind,
    Unfit,
    change,
    cursor_column,
    key_columns,
    merge_statements,
    quote,
    stream_columns,
    widen,
)
from ferryman.builtin._runtime import ConfigError

MODES = ("append", "overwrite", "append_dedup")
SQL_TYPES: dict[Kind, str] = {
    "integer": "bigint",
    "number": "double precision",
    "boolean": "boolean",
    "string": "text",
    "date": "date",
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "time": "time without time zone",
    "timetz": "time with time zone",
    "json": "jsonb",
}
_STORED_KINDS: dict[str, Kind] = {
    **{sql: kind for kind, sql in SQL_TYPES.items()},
    "integer": "integer",
    "smallint": "integer",
    "numeric": "number",
    "real": "number",
    "character varying": "string",
    "json": "json",
}
_AIRBYTE = [
    ("_airbyte_raw_id", "uuid NOT NULL DEFAULT gen_random_uuid()"),
    ("_airbyte_extracted_at", "timestamp with time zone"),
    ("_airbyte_meta", "jsonb"),
    ("_airbyte_generation_id", "bigint"),
]
_LOADED = ["_airbyte_extracted_at", "_airbyte_meta", "_airbyte_generation_id"]
_STAGING_PREFIX = "_ferryman_staging_"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def lock_key(name: str) -> int:
    """The advisory lock (a signed 64-bit key) that marks a staging table as in use."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class LoadError(Exception):
    """PostgreSQL did not store a batch of records as it was given them."""


@dataclass
class Table:
    label: str
    schema: str
    name: str
    mode: str
    columns: list[Column]
    keys: list[Column]
    cursor: Column | None = None
    generation_id: int = 0
    sync_id: int | None = None
    staging: str | None = None
    staged: int = 0  # records committed to the staging table
    pending: int = 0  # records copied in the open transaction
    received: int = 0  # records copied so far: under append_dedup, their sequence numbers
    batch: str | None = None  # under append_dedup, the session's temporary table for it
    lines: list[bytes] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"{quote(self.schema)}.{quote(self.staging or self.name)}"

    @property
    def definitions(self) -> list[tuple[str, str]]:
        return [*_AIRBYTE, *((column.name, SQL_TYPES[column.kind]) for column in self.columns)]

    @property
    def names(self) -> str:
        return ", ".join(quote(name) for name in [*_LOADED, *(column.name for column in self.columns)])


def _staging_prefix(schema: str, name: str) -> str:
    return f"{_STAGING_PREFIX}{_digest(schema + '.' + name)}_"


def table_for(stream: ConfiguredStream, default_schema: str) -> Table:
    mode = stream.destination_sync_mode
    if mode not in MODES:
        raise ConfigError(
            f"stream '{stream.label}': destination_sync_mode '{mode}' is not supported"
            f" (use one of {', '.join(MODES)})"
        )
    if mode == "append_dedup" and not stream.primary_key:
        raise ConfigError(f"stream '{stream.label}': append_dedup needs a primary key")
    schema = stream.namespace or default_schema
    for what, name in (("stream name", stream.name), ("schema", schema)):
        if len(name.encode()) > MAX_NAME:
            raise ConfigError(f"stream '{stream.label}': the {what} is longer than PostgreSQL's 63 bytes")
    columns = stream_columns(stream)
    table = Table(
        stream.label,
        schema,
        stream.name,
        mode,
        columns,
        key_columns(stream, columns),
        cursor_column(stream, columns) if mode == "append_dedup" else None,
        stream.generation_id,
        stream.sync_id,
    )
    if mode == "overwrite":
        table.staging = _staging_prefix(schema, stream.name) + secrets.token_hex(4)
    return table


def _stored_columns(conn: psycopg.Connection[Any], schema: str, name: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s",
        (schema, name),
    ).fetchall()
    return {str(column): str(kind) for column, kind in rows}


def _drop_abandoned_staging(conn: psycopg.Connection[Any], table: Table) -> None:
    prefix = _staging_prefix(table.schema, table.name)
    names = conn.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = %s AND starts_with(table_name, %s)",
        (table.schema, prefix),
    ).fetchall()
    for (name,) in names:
        if name == table.staging:
            continue
        taken = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(name),)).fetchone()
        if taken and taken[0]:  # nobody holds it: its destination is gone
            conn.execute(f"DROP TABLE IF EXISTS {quote(table.schema)}.{quote(name)}")
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(name),))


def prepare(conn: psycopg.Connection[Any], table: Table, number: int) -> None:
    """Create the table (or staging table), or bring a stored one up to the stream's schema."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(table.schema)}")
    definition = ", ".join(f"{quote(column)} {kind}" for column, kind in table.definitions)
    if table.staging is not None:
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(table.staging),))
        _drop_abandoned_staging(conn, table)
        conn.execute(f"CREATE TABLE {table.target} ({definition})")
        return
    conn.execute(f"CREATE TABLE IF NOT EXISTS {table.target} ({definition})")
    stored = _stored_columns(conn, table.schema, table.name)
    for name, kind in _AIRBYTE:
        if name not in stored:
            conn.execute(f"ALTER TABLE {table.target} ADD COLUMN {quote(name)} {kind}")
    columns = []
    for column in table.columns:
        if column.name not in stored:
            conn.execute(
                f"ALTER TABLE {table.target} ADD COLUMN {quote(column.name)} {SQL_TYPES[column.kind]}"
            )
            columns.append(column)
            continue
        kept = _STORED_KINDS.get(stored[column.name], "string")
        kind = widen(kept, column.kind)
        if kind != kept:
            name = quote(column.name)
            using = f"to_jsonb({name})" if kind == "json" else f"{name}::{SQL_TYPES[kind]}"
            conn.execute(
                f"ALTER TABLE {table.target} ALTER COLUMN {name} TYPE {SQL_TYPES[kind]} USING {using}"
            )
        columns.append(replace(column, kind=kind))
    by_name = {column.name: column for column in columns}
    table.columns = columns
    table.keys = [by_name[key.name] for key in table.keys]
    table.cursor = by_name[table.cursor.name] if table.cursor is not None else None
    if table.mode == "append_dedup":
        keys = ", ".join(quote(column.name) for column in table.keys)
        index = quote(f"_ferryman_key_{_digest(table.schema + '.' + table.name)}")
        conn.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table.target} ({keys})")
        table.batch = f"_ferryman_batch_{number}"
        # Without _airbyte_raw_id: the merge's INSERT draws it from the table's default, once.
        loaded = ", ".join(
            f"{quote(name)} {kind}" for name, kind in table.definitions if name != "_airbyte_raw_id"
        )
        conn.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {table.batch} ({loaded}, _ferryman_seq bigint)")


# --- rows -------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    text = CONVERTERS["string"](value)
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        raise Unfit(SERIALIZATION_ERROR)
    return str(text)


def _json(value: Any) -> str:
    text = orjson.dumps(value)
    if b"\\u0000" in text:  # nor can jsonb
        raise Unfit(SERIALIZATION_ERROR)
    return text.decode()


_CONVERTERS: dict[Kind, Callable[[Any], Any]] = {**CONVERTERS, "string": _text, "json": _json}


def _lookup(path: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    if len(path) == 1:
        key = path[0]
        return lambda data: data.get(key)

    def nested(data: dict[str, Any]) -> Any:
        node: Any = data
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        return node

    return nested


def rows(table: Table, lines: list[bytes]) -> Iterator[tuple[Any, ...]]:
    """The COPY rows of ``lines`` (RECORD messages) in :attr:`Table.names` order (and, under
    append_dedup, each one's sequence number last)."""
    plan = [(_lookup(c.path), _CONVERTERS[c.kind], c.field) for c in table.columns]
    loads, generation, sync_id = orjson.loads, table.generation_id, table.sync_id
    clean = orjson.dumps({"changes": [], "sync_id": sync_id}).decode()
    last_ms: Any = None
    extracted_at: datetime | None = None
    sequence = table.received if table.mode == "append_dedup" else None
    for line in lines:
        record = loads(line)["record"]
        data = record.get("data")
        data = data if isinstance(data, dict) else {}
        emitted = record.get("emitted_at")
        if emitted != last_ms:
            last_ms = emitted
            extracted_at = (
                datetime.fromtimestamp(emitted / 1000, UTC) if isinstance(emitted, int | float) else None
            )
        values: list[Any] = [extracted_at, clean, generation]
        changes: list[Any] | None = None
        for lookup, convert, name in plan:
            value = lookup(data)
            if value is None:
                values.append(None)
                continue
            try:
                values.append(convert(value))
            except Unfit as exc:
                values.append(None)
                changes = changes or []
                changes.append(change(name, exc.reason))
        meta = record.get("meta")
        source = meta.get("changes") if isinstance(meta, dict) else None
        if changes or (isinstance(source, list) and source):
            listed = [*(source if isinstance(source, list) else []), *(changes or [])]
            values[1] = _json({"changes": listed, "sync_id": sync_id})
        if sequence is not None:
            values.append(sequence)
            sequence += 1
        yield tuple(values)


def copy_lines(conn: psycopg.Connection[Any], table: Table) -> None:
    """COPY the table's buffered lines into its target (or batch table), in the open transaction."""
    lines = table.lines
    into = table.target if table.batch is None else table.batch
    names = table.names + (", _ferryman_seq" if table.batch is not None else "")
    with conn.cursor() as cur:
        with cur.copy(f"COPY {into} ({names}) FROM STDIN") as copy:
            for row in rows(table, lines):
                copy.write_row(row)
        stored = cur.rowcount
    if stored != len(lines):
        raise LoadError(
            f"stream '{table.label}': PostgreSQL stored {stored} of {len(lines)} records;"
            " no state covering them was confirmed"
        )
    table.pending += len(lines)
    table.received += len(lines)
    lines.clear()


def merge_batch(conn: psycopg.Connection[Any], table: Table) -> None:
    """Under append_dedup: upsert the batch table's latest row per key into the table."""
    assert table.batch is not None
    keys = ", ".join(quote(column.name) for column in table.keys)
    missing = " OR ".join(f"{quote(column.name)} IS NULL" for column in table.keys)
    row = conn.execute(f"SELECT min(_ferryman_seq) FROM {table.batch} WHERE {missing}").fetchone()
    if row is not None and row[0] is not None:
        fields = ", ".join(f"'{column.field}' ({SQL_TYPES[column.kind]})" for column in table.keys)
        raise ConfigError(
            f"stream '{table.label}': record #{row[0] + 1} of this sync has no usable value for its"
            f" primary key {fields}: the field is missing, null or not of that type,"
            " so append_dedup cannot store it"
        )
    order = "_ferryman_seq DESC"
    if table.cursor is not None:
        order = f"{quote(table.cursor.name)} DESC NULLS LAST, {order}"
    conn.execute(
        "CREATE TEMPORARY TABLE _ferryman_latest ON COMMIT DROP AS"
        f" SELECT DISTINCT ON ({keys}) * FROM {table.batch} ORDER BY {keys}, {order}"
    )
    for statement in merge_statements(
        table.target,
        "_ferryman_latest",
        table.columns,
        table.keys,
        table.cursor,
        table.names,
    ):
        conn.execute(statement)
    conn.execute("DROP TABLE _ferryman_latest")
    conn.execute(f"TRUNCATE {table.batch}")
