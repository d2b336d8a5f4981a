"""destination-postgres's tables: their columns, and loading a stream's records into one.

Tables have the typed shape of :mod:`ferryman.builtin._columns`, with PostgreSQL types. Records
are decoded and converted in Python by the shared rules (:data:`CONVERTERS`), then sent with
``COPY ... FROM STDIN``; ``_airbyte_raw_id`` comes from the column's default,
``gen_random_uuid()``. Under append_dedup the rows are merged into the table as
:mod:`ferryman.builtin._postgres_dedup` says; under overwrite to a staging table named after the
sync, which replaces the table once the stream completed. A staging table belongs to the session
holding the advisory lock named after it: one whose lock nobody holds was left by a destination
that died or failed, wherever it ran; the next attempt of the same sync takes it over, the next
overwrite of the stream by another sync drops it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg._copy_base import TextFormatter  # pinned psycopg: its formatter, without a copy
from psycopg.abc import Buffer
from psycopg.adapt import Transformer

from ferryman.builtin._catalog import ConfiguredStream, WriteMode
from ferryman.builtin._columns import (
    CONVERTERS,
    MAX_NAME,
    SERIALIZATION_ERROR,
    Column,
    Kind,
    Unfit,
    change,
    cursor_column,
    decode_exact,
    encode_exact,
    extracted_time,
    key_columns,
    quote,
    stream_columns,
    widen,
)
from ferryman.builtin._postgres_catalog import Catalog, read_catalog
from ferryman.builtin._runtime import ConfigError
from ferryman.builtin._spill import Spill

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
AIRBYTE = [
    ("_airbyte_raw_id", "uuid NOT NULL DEFAULT gen_random_uuid()"),
    ("_airbyte_extracted_at", "timestamp with time zone"),
    ("_airbyte_meta", "jsonb"),
    ("_airbyte_generation_id", "bigint"),
]
LOADED = ["_airbyte_extracted_at", "_airbyte_meta", "_airbyte_generation_id"]
_CHUNK = 1 << 20
_STAGING_PREFIX = "_ferryman_staging_"


# Staging tables and unique indexes are named after a hash of their table's schema and name: 16
# hex characters (64 bits). Earlier versions used 8, and two streams of 5,000 in one schema then
# shared a name about once in 300 syncs (the birthday bound): one stream's staging table was
# taken, or dropped as abandoned, by the other. Names of that length are still found (LEGACY).
DIGEST = 16
LEGACY_DIGEST = 8


def digest(text: str, length: int = DIGEST) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# Staging tables share their advisory locks: those of one sync (one owner) are spread over this
# many locks. A session-level advisory lock holds a slot of the server's lock table for the whole
# session (``max_locks_per_transaction`` slots per connection, shared by all), so a lock per
# staging table made a sync of a few thousand overwrite streams fail with "out of shared memory".
LOCK_BUCKETS = 16


def lock_key(name: str) -> int:
    """The advisory lock (a signed 64-bit key) that marks staging table ``name`` as in use: one
    of the ``LOCK_BUCKETS`` locks of its owner (the sync). Two owners do not share one; a live
    attempt of a sync keeps its next attempt off every staging table in its buckets."""
    owner = name.rsplit("_", 1)[-1]
    bucket = hashlib.sha256(name.encode()).digest()[0] % LOCK_BUCKETS
    key = f"{_STAGING_PREFIX}{owner}:{bucket}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


class LoadError(Exception):
    """PostgreSQL did not store a batch of records as it was given them."""


class StagingBusy(Exception):
    """The staging table a sync's attempt would resume is held by another live session."""


@dataclass
class Table(WriteMode):
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
    batch_keys: set[Any] = field(default_factory=set)  # the keys in the batch table
    repeated: bool = False  # whether the batch table may hold a key more than once
    fresh_keys: set[Any] | None = None  # keys of this sync, while they are copied straight in
    # Held streams (see ``holds``): how many lines of the loader's buffer a received state covers;
    # the records after the stream's last state, in COPY's format in the ``hold`` spill file until
    # a state covers them or the stream completes (``held``: counted by the loader; the spill's
    # ``lines``: by the database's thread), and whether they are in the open transaction too,
    # under a savepoint (:mod:`ferryman.builtin._postgres_hold`); whether the stream completed.
    covered: int = 0
    hold: Spill | None = None
    held: int = 0
    hold_sent: bool = False
    completed: bool = False
    created: bool = False  # the set-up made the table it fills: empty, without an index

    @property
    def holding(self) -> int:
        return self.hold.lines if self.hold is not None else 0

    @property
    def target(self) -> str:
        return f"{quote(self.schema)}.{quote(self.staging or self.name)}"

    @property
    def definitions(self) -> list[tuple[str, str]]:
        return [*AIRBYTE, *((column.name, SQL_TYPES[column.kind]) for column in self.columns)]

    @property
    def names(self) -> str:
        return ", ".join(quote(name) for name in [*LOADED, *(column.name for column in self.columns)])


MAX_COLUMNS = 1600  # PostgreSQL's limit on a table's columns, dropped ones included


def staging_prefix(schema: str, name: str, length: int = DIGEST) -> str:
    """How the names of the staging tables of table ``schema.name`` start (``length``: of the
    hash in them; LEGACY_DIGEST for those of earlier versions)."""
    return f"{_STAGING_PREFIX}{digest(schema + '.' + name, length)}_"


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
    if len(AIRBYTE) + len(columns) > MAX_COLUMNS:
        raise ConfigError(_too_wide(stream.label, f"its {len(columns)} properties"))
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
        # Named after the sync (the job) when there is one: its next attempt resumes it.
        owner = secrets.token_hex(4) if stream.sync_id is None else f"s{stream.sync_id}"
        table.staging = staging_prefix(schema, stream.name) + owner
    return table


def read_tables(conn: psycopg.Connection[Any], tables: Iterable[Table]) -> Catalog:
    """What the set-up of ``tables`` reads of the catalog, in one query (see
    :mod:`ferryman.builtin._postgres_catalog`)."""
    tables = list(tables)
    catalog = read_catalog(conn, [(table.schema, table.name) for table in tables])
    catalog.ours = {(table.schema, table.staging) for table in tables if table.staging is not None}
    return catalog


def _made(catalog: Catalog, table: Table) -> None:
    """The set-up created the table it fills (the staging table under overwrite): empty, no index."""
    table.created = True
    # A column's type as information_schema names it: the definition without its constraints.
    columns = {name: kind.partition(" NOT NULL")[0] for name, kind in table.definitions}
    catalog.made(table.schema, table.staging or table.name, columns)


def _drop_abandoned_staging(conn: psycopg.Connection[Any], table: Table, catalog: Catalog) -> None:
    found = [
        name
        for length in (DIGEST, LEGACY_DIGEST)
        for name in catalog.named(table.schema, staging_prefix(table.schema, table.name, length))
    ]
    for name in found:
        if (table.schema, name) in catalog.ours:  # this sync's: a stream whose hash is the same
            continue
        taken = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(name),)).fetchone()
        if taken and taken[0]:  # nobody holds it: its destination is gone
            conn.execute(f"DROP TABLE IF EXISTS {quote(table.schema)}.{quote(name)}")
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(name),))
            catalog.dropped(table.schema, name)


def _take_legacy_staging(conn: psycopg.Connection[Any], table: Table, catalog: Catalog) -> None:
    """An earlier attempt of this sync, run by an earlier version, staged under the shorter hash:
    its staging table gets this version's name, so that this attempt resumes it (else the records
    before the state it resumes from would be missing from the table it swaps in)."""
    assert table.staging is not None
    if table.sync_id is None or catalog.exists(table.schema, table.staging):
        return
    owner = table.staging.rsplit("_", 1)[1]
    legacy = staging_prefix(table.schema, table.name, LEGACY_DIGEST) + owner
    if not catalog.exists(table.schema, legacy) or (table.schema, legacy) in catalog.ours:
        return
    conn.execute(f"ALTER TABLE {quote(table.schema)}.{quote(legacy)} RENAME TO {quote(table.staging)}")
    catalog.renamed(table.schema, legacy, table.staging)


def _resumed(conn: psycopg.Connection[Any], table: Table, catalog: Catalog) -> bool:
    """Whether an earlier attempt of this sync (same ``sync_id``: the job) already put its
    records in place of the overwritten table (see the DuckDB destination's ``_resumed``)."""
    if table.sync_id is None or "_airbyte_meta" not in catalog.columns(table.schema, table.name):
        return False
    final = f"{quote(table.schema)}.{quote(table.name)}"
    row = conn.execute(f"SELECT _airbyte_meta->>'sync_id' FROM {final} LIMIT 1").fetchone()
    return row is not None and row[0] == str(table.sync_id)


def prepare(conn: psycopg.Connection[Any], table: Table, catalog: Catalog) -> None:
    """Create the table (or staging table), or bring a stored one up to the stream's schema;
    ``catalog``: what :func:`read_tables` read, which this keeps up to date."""
    try:
        _prepare(conn, table, catalog)
    except psycopg.errors.TooManyColumns:
        # Columns dropped earlier still count in PostgreSQL's limit: a retry would fail the same.
        raise ConfigError(_too_wide(table.label, f"table {table.schema}.{table.name}")) from None


def _too_wide(label: str, what: str) -> str:
    return (
        f"stream '{label}': {what} would need more than PostgreSQL's {MAX_COLUMNS} columns; "
        "leave the stream out of the connection, or load it into DuckDB or JSONL"
    )


def _prepare(conn: psycopg.Connection[Any], table: Table, catalog: Catalog) -> None:
    if table.schema not in catalog.schemas:  # CREATE SCHEMA needs CREATE on the database, even
        # with IF NOT EXISTS: a role that may not create schemas loads into the one it has.
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(table.schema)}")
        catalog.schemas.add(table.schema)
    definition = ", ".join(f"{quote(column)} {kind}" for column, kind in table.definitions)
    if table.staging is not None and _resumed(conn, table, catalog):
        table.staging = None  # an earlier attempt of this sync swapped: go on filling its table
    if table.staging is not None:
        key = lock_key(table.staging)
        if key not in catalog.locks:  # the sync's staging tables share a few (LOCK_BUCKETS)
            taken = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if not (taken and taken[0]):
                raise StagingBusy(
                    f"stream '{table.label}': another session is filling staging table"
                    f" {quote(table.schema)}.{quote(table.staging)} of this sync (sync_id {table.sync_id});"
                    " is an earlier attempt of the job still running? Try again once it has ended"
                )
            catalog.locks.add(key)
        _take_legacy_staging(conn, table, catalog)
        _drop_abandoned_staging(conn, table, catalog)
        if not catalog.exists(table.schema, table.staging):
            conn.execute(f"CREATE TABLE {table.target} ({definition})")
            _made(catalog, table)
            return
        # An earlier attempt of this sync staged what this one resumes after: brought up to the
        # stream's schema like a stored table.
    if not catalog.exists(table.schema, table.name if table.staging is None else table.staging):
        storage = " WITH (fillfactor = 50)" if table.mode == "append_dedup" else ""
        # IF NOT EXISTS: another session may have made it since the catalog was read.
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table.target} ({definition}){storage}")
        _made(catalog, table)
        return
    stored = catalog.columns(table.schema, table.staging or table.name)
    for name, kind in AIRBYTE:
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


# --- rows -------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    text = CONVERTERS["string"](value)
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        raise Unfit(SERIALIZATION_ERROR)
    return str(text)


def _json(value: Any) -> str:
    text = encode_exact(value)
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


def rows(table: Table, lines: list[bytes], sequence: int | None = None) -> Iterator[tuple[Any, ...]]:
    """The COPY rows of ``lines`` (RECORD messages) in :attr:`Table.names` order (and, given the
    first one's ``sequence`` number, each one's sequence number last)."""
    plan = [(_lookup(c.path), _CONVERTERS[c.kind], c.field) for c in table.columns]
    loads, generation, sync_id = decode_exact, table.generation_id, table.sync_id
    clean = orjson.dumps({"changes": [], "sync_id": sync_id}).decode()
    last_ms: Any = None
    extracted_at: datetime | None = None
    for line in lines:
        record = loads(line)["record"]
        data = record.get("data")
        data = data if isinstance(data, dict) else {}
        emitted = record.get("emitted_at")
        if emitted != last_ms:
            last_ms = emitted
            extracted_at = extracted_time(emitted)
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


@dataclass
class Encoded:
    """Rows in COPY's text format, made ready before the connection is free to send them."""

    chunks: list[bytes]
    rows: int


def encode(found: Iterable[tuple[Any, ...]]) -> Encoded:
    """``found`` in COPY's text format, by psycopg's own formatter (in C), so that the loader's
    thread does the conversion while the database thread waits on the server. In chunks of
    ~1 MiB: each write to the server is a moment the database thread needs the GIL back."""
    formatter = TextFormatter(Transformer())
    chunks: list[bytes] = []
    pieces: list[Buffer] = []
    size = count = 0
    for row in found:
        data = formatter.write_row(row)
        count += 1
        if data:
            pieces.append(data)
            size += len(data)
            if size >= _CHUNK:
                chunks.append(b"".join(pieces))
                pieces.clear()
                size = 0
    pieces.append(formatter.end())
    chunks.append(b"".join(pieces))
    return Encoded(chunks, count)


def copy_encoded(
    conn: psycopg.Connection[Any], table: Table, into: str, names: str, encoded: Encoded
) -> None:
    """COPY ``encoded`` into ``into`` (``names`` its columns), in the open transaction."""
    copy_chunks(conn, table, into, names, encoded.chunks, encoded.rows)


def copy_chunks(
    conn: psycopg.Connection[Any], table: Table, into: str, names: str, chunks: Iterable[bytes], count: int
) -> None:
    """COPY ``count`` rows in COPY's text format (``chunks``, split anywhere) into ``into``."""
    with conn.cursor() as cur:
        with cur.copy(f"COPY {into} ({names}) FROM STDIN") as copy:
            for chunk in chunks:
                copy.write(chunk)
        stored = cur.rowcount
    if stored != count:
        raise LoadError(
            f"stream '{table.label}': PostgreSQL stored {stored} of {count} records;"
            " no state covering them was confirmed"
        )
