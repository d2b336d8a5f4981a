"""destination-postgres under append_dedup: one row per primary key.

An append_dedup table has a unique index on its primary key. Records are copied into a temporary
batch table as they come; each commit reduces the batch to the latest row per key (only when a
key came twice: :func:`encode_batch` tells) and upserts it with ``INSERT ... ON CONFLICT DO
UPDATE``, all in the transaction that the commit ends. The latest record of a key is the one
with the greatest cursor value (a NULL cursor loses to any value), else the last received; it
replaces the stored row unless the stored cursor is greater, and a winner whose CDC
``_ab_cdc_deleted_at`` is set deletes its key. Into a table that was empty when the sync
started, the first record of each key is copied straight into the table (see
:data:`FRESH_KEYS`): a first load costs what an append costs.

Tried and dropped (figures in ``docs/performance.md``): ``DELETE ... USING`` the batch then
``INSERT``, and ``UPDATE ... FROM`` plus an anti-joined ``INSERT`` (the planner, without
statistics on the table, hashes the whole table at every commit); resolving keys in Python and
copying new keys straight into the table (a lookup per key and a ``DELETE`` per replaced row
cost as much as ``ON CONFLICT``).
"""

from __future__ import annotations

from typing import Any

import psycopg

from ferryman.builtin._columns import CDC_DELETED_AT, quote
from ferryman.builtin._postgres_catalog import Catalog
from ferryman.builtin._postgres_tables import (
    LEGACY_DIGEST,
    LOADED,
    SQL_TYPES,
    Encoded,
    Table,
    digest,
    encode,
    rows,
)
from ferryman.builtin._runtime import ConfigError

# A table empty when the sync starts (its first sync, or after a reset) is filled the way append
# fills a table while the sync brings keys it has not brought before: the first record of a key
# is copied straight into the table (unless it is a CDC deletion), and only the later records of
# a key go through the batch table and the merge, which compares them with the row already
# stored. The destination remembers up to this many keys for it, then merges every record.
FRESH_KEYS = 5_000_000

# Key kinds whose Python values are equal exactly when PostgreSQL's are (not so for JSON text,
# NaN, or the time zones of a time of day): for these the batch's keys are told apart in Python.
_EXACT_KEYS = ("integer", "string", "boolean", "date", "timestamp", "timestamptz")


def prepare_dedup(
    conn: psycopg.Connection[Any], table: Table, number: int, catalog: Catalog, lasting: bool = True
) -> None:
    """Give the table its unique key and a batch table: one for the session when ``lasting``,
    else one made in each transaction that copies into it (see :func:`create_batch`)."""
    _unique_key(conn, table, catalog)
    if table.created:
        empty = True
    else:
        found = conn.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {table.target})").fetchone()
        empty = found is not None and bool(found[0])
    exact = all(column.kind in _EXACT_KEYS for column in table.keys)
    table.fresh_keys = set() if exact and empty else None
    table.batch = f"_ferryman_batch_{number}"
    if lasting:
        create_batch(conn, table, lasting=True)


def create_batch(conn: psycopg.Connection[Any], table: Table, lasting: bool) -> None:
    """The table's temporary batch table. One that is not ``lasting`` is dropped by the commit
    that ends the transaction: a server session holding thousands of temporary tables cannot
    drop them all when it ends (they take a lock each, in one transaction), so with many
    append_dedup streams each commit drops the batch tables it used."""
    assert table.batch is not None
    # Without _airbyte_raw_id: the merge's INSERT draws it from the table's default, once.
    loaded = ", ".join(
        f"{quote(name)} {kind}" for name, kind in table.definitions if name != "_airbyte_raw_id"
    )
    until = "" if lasting else " ON COMMIT DROP"
    conn.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {table.batch} ({loaded}, _ferryman_seq bigint){until}"
    )


def _unique_key(conn: psycopg.Connection[Any], table: Table, catalog: Catalog) -> None:
    """The unique index on the primary key. A table that holds a key twice (it was appended to
    before) is first reduced to one row per key, the latest by cursor, then by
    ``_airbyte_extracted_at``, then the one stored last."""
    hashed = digest(table.schema + "." + table.name)
    if catalog.is_index(table.schema, f"_ferryman_pk_{hashed}"):
        return
    legacy = digest(table.schema + "." + table.name, LEGACY_DIGEST)
    if catalog.is_index(table.schema, f"_ferryman_pk_{legacy}") and _indexes(
        conn, table, f"_ferryman_pk_{legacy}"
    ):
        return  # made by an earlier version, under the shorter hash
    keys = ", ".join(quote(column.name) for column in table.keys)
    if not table.created:
        order = "_airbyte_extracted_at DESC NULLS LAST, ctid DESC"
        if table.cursor is not None:
            order = f"{quote(table.cursor.name)} DESC NULLS LAST, {order}"
        present = " AND ".join(f"{quote(column.name)} IS NOT NULL" for column in table.keys)
        conn.execute(
            f"DELETE FROM {table.target} WHERE ctid IN (SELECT ctid FROM (SELECT ctid, row_number() OVER"
            f" (PARTITION BY {keys} ORDER BY {order}) AS n FROM {table.target} WHERE {present}) AS ranked"
            " WHERE n > 1)"
        )
    conn.execute(f"CREATE UNIQUE INDEX {quote(f'_ferryman_pk_{hashed}')} ON {table.target} ({keys})")
    # The plain index of earlier versions is redundant beside it.
    if catalog.is_index(table.schema, f"_ferryman_key_{legacy}") and _indexes(
        conn, table, f"_ferryman_key_{legacy}"
    ):
        conn.execute(f"DROP INDEX IF EXISTS {quote(table.schema)}.{quote('_ferryman_key_' + legacy)}")


def _indexes(conn: psycopg.Connection[Any], table: Table, index: str) -> bool:
    """Whether ``index`` (in the table's schema) is an index of the table: a name of the shorter
    hash may be another table's."""
    found = conn.execute(
        "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname = %s AND c.relnamespace = %s::regnamespace AND i.indrelid = %s::regclass",
        (index, quote(table.schema), table.target),
    ).fetchone()
    return found is not None


def _refuse(table: Table, number: int) -> ConfigError:
    fields = ", ".join(f"'{column.field}' ({SQL_TYPES[column.kind]})" for column in table.keys)
    return ConfigError(
        f"stream '{table.label}': record #{number} of this sync has no usable value for its"
        f" primary key {fields}: the field is missing, null or not of that type,"
        " so append_dedup cannot store it"
    )


def _wins(new: Any, old: Any) -> bool:
    """Whether a record with cursor ``new`` replaces one with cursor ``old`` received before it."""
    return old is None or (new is not None and new >= old)


# --- in SQL -----------------------------------------------------------------------------------


def batch_names(table: Table) -> str:
    """The batch table's columns, as :func:`encode_batch` gives its rows."""
    return table.names + ", _ferryman_seq"


def encode_batch(table: Table, lines: list[bytes]) -> tuple[Encoded | None, Encoded]:
    """``lines`` as rows to copy straight into the table (see :data:`FRESH_KEYS`) and rows of the
    table's batch table; refuses a record without its primary key, and notes in the table
    whether the batch holds a key twice."""
    at = [len(LOADED) + table.columns.index(column) for column in table.keys]
    single = at[0] if len(at) == 1 else None
    deleted = next((c for c in table.columns if c.path == (CDC_DELETED_AT,)), None)
    gone = len(LOADED) + table.columns.index(deleted) if deleted is not None else None
    seen, fresh = table.batch_keys, table.fresh_keys
    if not all(column.kind in _EXACT_KEYS for column in table.keys):
        table.repeated = True
    direct: list[tuple[Any, ...]] = []
    batched: list[tuple[Any, ...]] = []
    for row in rows(table, lines, sequence=table.received):
        key = row[single] if single is not None else tuple(row[i] for i in at)
        if key is None or (single is None and None in key):
            raise _refuse(table, row[-1] + 1)
        if fresh is not None and key not in fresh:
            fresh.add(key)
            if gone is None or row[gone] is None:
                direct.append(row[:-1])
                continue
        if key in seen:
            table.repeated = True
        else:
            seen.add(key)
        batched.append(row)
    if fresh is not None and len(fresh) >= FRESH_KEYS:
        table.fresh_keys = None  # from here on every record is merged
    table.received += len(lines)
    return (encode(direct) if direct else None), encode(batched)


def merge_statements(table: Table, latest: str) -> list[str]:
    """Upsert ``latest`` (one row per key) into the table on its unique key: a stored row is
    replaced (with a new ``_airbyte_raw_id``) unless its cursor is later; a row whose CDC
    ``_ab_cdc_deleted_at`` is set deletes its key instead."""
    keys = ", ".join(quote(column.name) for column in table.keys)
    cursor = quote(table.cursor.name) if table.cursor is not None else None
    wins = "" if cursor is None else f" WHERE t.{cursor} IS NULL OR EXCLUDED.{cursor} >= t.{cursor}"
    key_names = {column.name for column in table.keys}
    assigned = ", ".join(
        f"{quote(name)} = EXCLUDED.{quote(name)}"
        for name in ["_airbyte_raw_id", *LOADED, *(column.name for column in table.columns)]
        if name not in key_names
    )
    deleted = next((c for c in table.columns if c.path == (CDC_DELETED_AT,)), None)
    statements = []
    keep = ""
    if deleted is not None:
        match = " AND ".join(f"t.{quote(c.name)} = b.{quote(c.name)}" for c in table.keys)
        older = "" if cursor is None else f" AND (t.{cursor} IS NULL OR b.{cursor} >= t.{cursor})"
        statements.append(
            f"DELETE FROM {table.target} AS t USING {latest} AS b"
            f" WHERE {match} AND b.{quote(deleted.name)} IS NOT NULL{older}"
        )
        keep = f" WHERE {quote(deleted.name)} IS NULL"
    statements.append(
        f"INSERT INTO {table.target} AS t ({table.names}) SELECT {table.names} FROM {latest} AS b{keep}"
        f" ON CONFLICT ({keys}) DO UPDATE SET {assigned}{wins}"
    )
    return statements


def merge_batch(conn: psycopg.Connection[Any], table: Table, repeated: bool) -> None:
    """Upsert the batch table's latest row per key into the table, and empty the batch table.
    ``repeated``: whether the batch may hold a key twice (then it is reduced first)."""
    assert table.batch is not None
    keys = ", ".join(quote(column.name) for column in table.keys)
    order = "_ferryman_seq DESC"
    if table.cursor is not None:
        order = f"{quote(table.cursor.name)} DESC NULLS LAST, {order}"
    latest = table.batch
    if repeated:
        conn.execute(
            "CREATE TEMPORARY TABLE _ferryman_latest ON COMMIT DROP AS"
            f" SELECT DISTINCT ON ({keys}) * FROM {table.batch} ORDER BY {keys}, {order}"
        )
        latest = "_ferryman_latest"
    for statement in merge_statements(table, latest):
        conn.execute(statement)
    if repeated:
        conn.execute("DROP TABLE _ferryman_latest")
    conn.execute(f"TRUNCATE {table.batch}")
