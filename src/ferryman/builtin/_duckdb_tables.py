"""destination-duckdb's tables: their columns, how a stream's spilled records are loaded into one.

Tables have the typed shape of :mod:`ferryman.builtin._columns`. Records are read with
``read_ndjson_objects``, whose only limit on a line (the object size) is raised to the longest
record of the batch. ``from_json`` parses each record once into a struct holding, for each
top-level property, the JSON text of its value; each column's value is cast from that text by
the rules of ``docs/destinations.md`` (a value that does not fit is stored as NULL and listed in
``_airbyte_meta``). The few columns a struct cannot hold (nested key fields, names that differ
only in case) are read by JSON path. Under append_dedup each spilled line is ``{"s": sequence
number, "m": RECORD line}``, so the latest record for a key wins. :func:`load_spill` checks that
DuckDB read as many records as the spill holds: a state is echoed only after that check.

Before session 19 every value was extracted by path, then parsed twice more (its text, its
type); ``tests/unit/test_duckdb_load_sql.py`` keeps that SQL and checks that both store the same.
"""

from __future__ import annotations

import bisect
import os
import re
import secrets
from dataclasses import dataclass, field, replace

import duckdb
import orjson

from ferryman.builtin._catalog import ConfiguredStream, WriteMode
from ferryman.builtin._columns import (
    EMITTED_MS_MAX,
    EMITTED_MS_MIN,
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
from ferryman.builtin._duckdb_staging import Owner, StagingLocks, pid_alive
from ferryman.builtin._runtime import ConfigError
from ferryman.builtin._spill import Spill

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
# What follows ``<prefix><stream>_`` in a staging table's name: ``r<8 hex>`` (this version: a
# token of the process, its lock file says whether it lives) or an earlier version's pid, then
# ``_s<sync_id>``. Either begins right after one "_", and holds no other "_" than the one of
# "_s": so a longer stream's staging table (``users_2``'s, under ``users``'s prefix) never matches.
_OWNER = re.compile(r"(?:r[0-9a-f]{8}|([0-9]+))(?:_s([0-9]+))?")
_TOKEN: dict[int, str] = {}  # pid -> the process's token (a forked child makes its own)
_OBJECT_SIZE = 16 << 20  # read_ndjson_objects' own default limit; raised for longer records


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_pointer(parts: tuple[str, ...] | list[str]) -> str:
    """The JSON pointer (RFC 6901) of a field: unlike a ``$.""`` path, it takes any key, an empty
    one too, with only ``~`` and ``/`` escaped."""
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


class LoadError(Exception):
    """DuckDB did not store a batch of records as it was given them."""


@dataclass
class Table(WriteMode):
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
    # Held streams (see ``holds``): how many of ``lines`` a received state covers; the spilled
    # records after the stream's last state (kept out of the database until a state covers them
    # or the stream completes); whether the stream completed.
    covered: int = 0
    tail: Spill | None = None
    completed: bool = False

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
        # once each swap in their own complete data (the last to commit wins), never a mix. The
        # token is random, not the pid: two containers' destinations often have the same pid.
        # The sync's id in the name lets the sync's next attempt take it over once this process
        # is gone (its lock, see prepare()).
        token = _TOKEN.setdefault(os.getpid(), secrets.token_hex(4))
        table.staging = _staging_name(stream.name, f"r{token}", stream.sync_id)
    return table


def _staging_name(stream: str, owner: str, sync_id: int | None) -> str:
    sync = "" if sync_id is None else f"_s{sync_id}"
    return f"{_STAGING_PREFIX}{stream}_{owner}{sync}"


def _own_staging(table: Table, locks: StagingLocks) -> str | None:
    """Lock the staging table's file before the table is created; on a clash with a live
    process (a token drawn twice) draw another. Where no lock can be made, fall back to an
    earlier version's name, by pid, which others judge by the pid; returns then why."""
    assert table.staging is not None
    for _ in range(3):
        problem = locks.own(table.schema, table.staging)
        if problem is None:
            return None
        if not problem.endswith("held by another process"):
            break
        table.staging = _staging_name(table.name, f"r{secrets.token_hex(4)}", table.sync_id)
    table.staging = _staging_name(table.name, str(os.getpid()), table.sync_id)
    return problem


@dataclass
class Catalog:
    """What :func:`prepare` needs of the database's catalog, read in one go by
    :func:`read_catalog` and kept up to date as the set-up creates, renames and drops tables.

    Asking ``information_schema`` per stream scanned the whole catalog each time: quadratic in
    the streams (3,000 overwrite streams spent minutes there). The commit's transaction holds the
    database file, which no other process can write meanwhile, so what was read stays true.
    """

    staging: dict[str, list[str]]  # schema -> the names of its staging tables, sorted
    meta: set[tuple[str, str]]  # (schema, lowercased name) of the tables with an _airbyte_meta column

    def staged(self, schema: str, prefix: str) -> list[str]:
        names = self.staging.get(schema, [])
        found = []
        for name in names[bisect.bisect_left(names, prefix) :]:
            if not name.startswith(prefix):
                break
            found.append(name)
        return found

    def added(self, schema: str, name: str) -> None:
        """A table of Airbyte's shape (with ``_airbyte_meta``) was created, or renamed to ``name``."""
        self.meta.add((schema, name.lower()))
        names = self.staging.setdefault(schema, [])
        at = bisect.bisect_left(names, name)
        if name.startswith(_STAGING_PREFIX) and (at == len(names) or names[at] != name):
            names.insert(at, name)

    def removed(self, schema: str, name: str) -> None:
        """The table was dropped, or renamed."""
        self.meta.discard((schema, name.lower()))
        names = self.staging.get(schema, [])
        at = bisect.bisect_left(names, name)
        if at < len(names) and names[at] == name:
            del names[at]


def read_catalog(con: duckdb.DuckDBPyConnection) -> Catalog:
    """The staging tables and the tables holding ``_airbyte_meta``, in two queries."""
    staging: dict[str, list[str]] = {}
    rows = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE starts_with(table_name, ?)",
        [_STAGING_PREFIX],
    ).fetchall()
    for schema, name in sorted(rows):
        staging.setdefault(schema, []).append(name)
    meta = con.execute(
        "SELECT table_schema, lower(table_name) FROM information_schema.columns"
        " WHERE column_name = '_airbyte_meta'"
    ).fetchall()
    return Catalog(staging, {(schema, name) for schema, name in meta})


def _claim_staging(
    con: duckdb.DuckDBPyConnection, table: Table, locks: StagingLocks, catalog: Catalog
) -> bool:
    """Drop the staging tables of this stream left by destinations that died before their swap,
    but take over the one of an earlier attempt of this sync (same ``sync_id``: the job), which
    its next attempt resumes; returns whether there was one. An owner is dead when its lock
    file can be locked, or, for a table without one (an earlier version's), when its pid is not
    a process here (:func:`pid_alive`)."""
    assert table.staging is not None
    prefix = f"{_STAGING_PREFIX}{table.name}_"
    names = catalog.staged(table.schema, prefix)
    claimed = False
    for name in sorted(names, key=lambda found: found != table.staging):  # ours first
        owner = _OWNER.fullmatch(name[len(prefix) :])
        if name == table.staging:
            claimed = True  # a dead process of this sync with our name (our pid, by fallback) left it
        elif owner is None or not _dead(locks, table.schema, name, owner[1]):
            continue
        elif not claimed and table.sync_id is not None and owner[2] == str(table.sync_id):
            con.execute(f"ALTER TABLE {quote(table.schema)}.{quote(name)} RENAME TO {quote(table.staging)}")
            catalog.removed(table.schema, name)
            catalog.added(table.schema, table.staging)
            claimed = True
        else:
            con.execute(f"DROP TABLE IF EXISTS {quote(table.schema)}.{quote(name)}")
            catalog.removed(table.schema, name)
        locks.release(table.schema, name)  # its file goes; the rename or drop commits with ours
    return claimed


def _dead(locks: StagingLocks, schema: str, name: str, pid: str | None) -> bool:
    found = locks.owner(schema, name)
    if found is not Owner.UNKNOWN:
        return found is Owner.GONE
    # No lock file: an earlier version's table (by pid), or one whose owner could not lock.
    # A token's table always had a file until its owner was done with it: nobody owns it.
    return pid is None or not pid_alive(int(pid))


def _resumed(con: duckdb.DuckDBPyConnection, table: Table, catalog: Catalog) -> bool:
    """Whether an earlier attempt of this sync (same ``sync_id``: the job) already put its
    records in place of the overwritten table: the stream completed (then the attempt failed),
    or an earlier version of Ferryman swapped at the stream's first state. Its retry resumes the
    stream from that attempt's last state, so its records must join those, not replace them.
    After a swap the table holds only that sync's rows, so one row tells."""
    if table.sync_id is None or (table.schema, table.name.lower()) not in catalog.meta:
        return False
    final = f"{quote(table.schema)}.{quote(table.name)}"
    row = con.execute(
        f"SELECT json_extract_string(_airbyte_meta, '$.sync_id') FROM {final} LIMIT 1"
    ).fetchone()
    return row is not None and row[0] == str(table.sync_id)


def prepare(
    con: duckdb.DuckDBPyConnection, table: Table, locks: StagingLocks, catalog: Catalog | None = None
) -> str | None:
    """Create the table, or bring a stored one up to the stream's schema.

    New properties add columns; a column whose kind widens (see :func:`widen`) is altered; the
    kinds the table keeps become the ones records are loaded as. An overwrite's staging table is
    locked first (see :mod:`ferryman.builtin._duckdb_staging`); returns a warning when it could
    not be, and a pid names it instead. ``catalog``: what :func:`read_catalog` read in this
    transaction (read here when not given), which this keeps up to date.
    """
    if catalog is None:
        catalog = read_catalog(con)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(table.schema)}")
    definition = ", ".join(f"{quote(column)} {kind}" for column, kind in table.definitions)
    if table.staging is not None and _resumed(con, table, catalog):
        table.staging = None  # an earlier attempt of this sync swapped: go on filling its table
    warning = None
    if table.staging is not None:
        problem = _own_staging(table, locks)
        if problem is not None:
            warning = (
                f"stream '{table.label}': no lock for its staging table ({problem}): named"
                f" {table.staging} instead, by pid, so another destination in another container"
                " (another pid namespace) may take it for a dead one"
            )
    if table.staging is not None and not _claim_staging(con, table, locks, catalog):
        con.execute(f"CREATE TABLE {table.target} ({definition})")
        catalog.added(table.schema, table.staging)
        return warning
    con.execute(f"CREATE TABLE IF NOT EXISTS {table.target} ({definition})")
    catalog.added(table.schema, table.staging or table.name)  # it has, or is given, _airbyte_meta
    # DESCRIBE finds the table as DuckDB does: a stored "Users" is the stream "users"'s table too.
    stored = {str(row[0]): str(row[1]) for row in con.execute(f"DESCRIBE {table.target}").fetchall()}
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
    return warning


def _whole(double: str) -> str:
    """A double that is a whole number of BIGINT's range, as a BIGINT. Strictly above -2^63: an
    integer just beyond the range (-2^63 - 1) reads as the double -2^63 and must not fit."""
    return (
        f"CASE WHEN {double} = trunc({double}) AND {double} > -9223372036854775808"
        f" THEN TRY_CAST({double} AS BIGINT) END"
    )


def _temporal(kind: Kind, text: str) -> str:
    """A date or time column's value from a string's text. DuckDB's TIMETZ takes no ``Z`` for UTC
    (``10:00:00Z``, valid ISO 8601, which destination-postgres stores): it gets ``+00:00``."""
    trimmed = f"trim({text})"
    if kind == "timetz":
        trimmed = f"regexp_replace({trimmed}, 'Z$', '+00:00')"
    return f"TRY_CAST({trimmed} AS {SQL_TYPES[kind]})"


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
            f" WHEN 'DOUBLE' THEN {_whole(double)} END"
        )
    if kind == "number":
        double = f"TRY_CAST({s} AS DOUBLE)"
        numeric = f"json_type({j}) IN ('UBIGINT', 'BIGINT', 'DOUBLE')"
        return f"CASE WHEN {numeric} AND isfinite({double}) THEN {double} END"
    if kind == "boolean":
        return f"CASE WHEN json_type({j}) = 'BOOLEAN' THEN TRY_CAST({s} AS BOOLEAN) END"
    return f"CASE WHEN json_type({j}) = 'VARCHAR' THEN {_temporal(kind, s)} END"


def _field_value(kind: Kind, t: str) -> str:
    """The SQL of one column's value from ``t``, the JSON text of its field as ``from_json`` wrote
    it (as VARCHAR; NULL for null and missing): the rules of :func:`_value`, without parsing again.

    A JSON text that is not a number (a string, object, array, true, false) casts to no number,
    so the text alone tells numbers apart. DuckDB wrote a number as json_type calls it DOUBLE when
    its text has ``.`` or an exponent, or when it does not fit 64 bits (then no BIGINT cast takes
    it either): those go the way of doubles, as in :func:`_value`; a string's text is its JSON
    string decoded, any other value's text its JSON, as ``json_extract_string`` gives them.
    """
    if kind == "json":
        return t
    text = f"json_extract_string({t}, '$')"
    if kind == "string":
        return text
    if kind == "integer":
        whole = _whole(f"TRY_CAST({t} AS DOUBLE)")
        written = f"contains({t}, '.') OR contains({t}, 'e') OR contains({t}, 'E')"
        return f"CASE WHEN {written} THEN {whole} ELSE coalesce(TRY_CAST({t} AS BIGINT), {whole}) END"
    if kind == "number":
        return f"CASE WHEN isfinite(TRY_CAST({t} AS DOUBLE)) THEN TRY_CAST({t} AS DOUBLE) END"
    if kind == "boolean":
        return f"CASE {t} WHEN 'true' THEN true WHEN 'false' THEN false END"
    return f"CASE WHEN prefix({t}, '\"') THEN {_temporal(kind, text)} END"


def _fields(table: Table) -> dict[str, Column]:
    """The columns read as fields of ``from_json``'s struct, by their top-level property.

    A struct cannot hold an empty name, nor two that differ only in case; such columns, and
    nested primary-key fields, are read by path instead.
    """
    fields: dict[str, Column] = {}
    taken: set[str] = set()
    for column in table.columns:
        name = column.path[0]
        if len(column.path) == 1 and name and name.lower() not in taken:
            fields[name] = column
            taken.add(name.lower())
    return fields


def _rows(table: Table, spill: Spill) -> str:
    """A SELECT of the table's columns (and, under dedup, the sequence number) from the spill."""
    limit = max(_OBJECT_SIZE, spill.longest + 64)
    return _typed(table, f"read_ndjson_objects($spill, maximum_object_size={limit})")


def _typed(table: Table, reader: str, keep: str | None = None) -> str:
    """The SELECT of :func:`_rows` from ``reader`` (a table function giving a ``json`` column),
    passing ``reader``'s column ``keep`` through too, as ``_ferryman_file``, when given."""
    fields = _fields(table)
    data = {name: "JSON" for name in fields}
    record: dict[str, object] = {"emitted_at": "VARCHAR", "meta": {"changes": "JSON"}}
    if data:
        record["data"] = data
    # Under dedup each spilled line is {"s": sequence number, "m": RECORD line}.
    structure = {"s": "BIGINT", "m": {"record": record}} if table.dedup else {"record": record}
    at = "r.m.record" if table.dedup else "r.record"
    paths: list[str] = []  # the columns read by path, as _value() reads them
    read = [f"from_json(json, {_literal(orjson.dumps(structure).decode())}) AS r"]
    # emitted_at as VARCHAR: a number's text differs from json_extract_string's only in how it
    # writes an exponent (both are the shortest that reads back), so the cast sees one double.
    named = [f"TRY_CAST({at}.emitted_at AS DOUBLE) AS _ms", f"{at}.meta.changes AS _meta_changes"]
    inner = [
        f"CASE WHEN _ms BETWEEN {EMITTED_MS_MIN} AND {EMITTED_MS_MAX}"
        " THEN to_timestamp(_ms / 1000) END AS _ts",
        "TRY_CAST(_meta_changes AS JSON[]) AS _changes",
    ]
    failed, changes = [], []
    for i, column in enumerate(table.columns, 1):
        if fields.get(column.path[0]) is column:
            field = f"{at}.data.{quote(column.path[0])}"
            named.append(f"{field} AS _f{i}" if column.kind == "json" else f"{field}::VARCHAR AS _f{i}")
            inner.append(f"{_field_value(column.kind, f'_f{i}')} AS _v{i}")
            present = f"_f{i} IS NOT NULL"
        else:
            paths.append(("/m/record/data" if table.dedup else "/record/data") + _json_pointer(column.path))
            j, s = f"_j[{len(paths)}]", f"_s[{len(paths)}]"
            inner.append(f"{_value(column.kind, j, s)} AS _v{i}")
            present = f"{s} IS NOT NULL"
        if column.kind not in ("string", "json"):
            inner.append(f"{present} AS _p{i}")
            entry = _literal(orjson.dumps(change(column.field)).decode())
            changes.append(f"CASE WHEN _p{i} AND _v{i} IS NULL THEN {entry}::JSON END")
            failed.append(f"(_p{i} AND _v{i} IS NULL)")
    if paths:
        read.append("json_extract(json, [" + ", ".join(_literal(path) for path in paths) + "]) AS _j")
        named += ["_j", "list_transform(_j, lambda v: json_extract_string(v, '$')) AS _s"]
    sync_id = "NULL" if table.sync_id is None else str(table.sync_id)
    listed = "coalesce(_changes, []::JSON[])"
    if changes:
        listed = f"list_concat({listed}, list_filter([{', '.join(changes)}], lambda c: c IS NOT NULL))"
    # Most records list no change: they get the constant, without building a list each.
    meta = (
        f"CASE WHEN {' OR '.join(['len(_changes) > 0', *failed])}"
        f" THEN json_object('changes', {listed}, 'sync_id', {sync_id})"
        f" ELSE json_object('changes', []::JSON[], 'sync_id', {sync_id}) END"
    )
    outer = [
        "gen_random_uuid() AS _airbyte_raw_id",
        "_ts AS _airbyte_extracted_at",
        f"{meta} AS _airbyte_meta",
        f"{table.generation_id}::BIGINT AS _airbyte_generation_id",
        *(f"_v{i} AS {quote(column.name)}" for i, column in enumerate(table.columns, 1)),
    ]
    if table.dedup:
        named.append("r.s AS _ferryman_seq")
        inner.append("_ferryman_seq")
        outer.append("_ferryman_seq")
    if keep is not None:
        read.append(f"{keep} AS _ferryman_file")
        named.append("_ferryman_file")
        inner.append("_ferryman_file")
        outer.append("_ferryman_file")
    return (
        f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM (SELECT {', '.join(named)} FROM ("
        f"SELECT {', '.join(read)} FROM {reader})))"
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


# A spill of at most this many bytes is loaded together with those of streams of the same shape.
# Each statement costs DuckDB ~8 ms of CPU to parse, bind and plan, whatever it loads (session
# 27: the SELECT's expressions, not the catalog or the data); a few small records cost far less
# than that, many large ones far more than the copy the shared statement makes of them.
GROUPED_SPILL_BYTES = 1 << 20
# What one shared statement takes at most: each table's INSERT then scans the shared rows for its
# own, so a statement over thousands of streams of a megabyte each would be quadratic (and hold
# gigabytes in its temporary table) where one statement a stream was linear.
GROUP_BYTES = 8 << 20
GROUP_STREAMS = 256


def load_spills(con: duckdb.DuckDBPyConnection, loads: list[tuple[Table, Spill]]) -> None:
    """:func:`load_spill` for each (table, spill), with one typed SELECT for the small spills of
    ``append`` and ``overwrite`` streams whose tables have the same shape (the same columns of
    the same kinds, read from the same fields; many streams of a CDC source, one per tenant or
    shard, do), so that a commit over thousands of streams that each received a few records pays
    DuckDB's fixed price per statement once per shape, then one plain INSERT per table. Each
    table is still checked to store exactly its spill's records."""
    shapes: dict[str, list[tuple[Table, Spill]]] = {}
    for table, spill in loads:
        if table.dedup or spill.size > GROUPED_SPILL_BYTES:
            load_spill(con, table, spill)
        else:
            shapes.setdefault(_typed(table, ""), []).append((table, spill))
    for group in shapes.values():
        for batch in _batches(group):
            if len(batch) == 1:
                load_spill(con, *batch[0])
            else:
                _load_group(con, batch)


def _batches(group: list[tuple[Table, Spill]]) -> list[list[tuple[Table, Spill]]]:
    """``group`` cut into runs of at most ``GROUP_STREAMS`` streams and ``GROUP_BYTES`` of spills."""
    batches: list[list[tuple[Table, Spill]]] = [[]]
    size = 0
    for table, spill in group:
        if batches[-1] and (len(batches[-1]) == GROUP_STREAMS or size + spill.size > GROUP_BYTES):
            batches.append([])
            size = 0
        batches[-1].append((table, spill))
        size += spill.size
    return batches


def _load_group(con: duckdb.DuckDBPyConnection, group: list[tuple[Table, Spill]]) -> None:
    longest = max(spill.longest for _, spill in group)
    reader = (
        f"read_ndjson_objects($files, maximum_object_size={max(_OBJECT_SIZE, longest + 64)}, filename=true)"
    )
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _ferryman_rows AS {_typed(group[0][0], reader, keep='filename')}",
            {"files": [spill.path for _, spill in group]},
        )
    except duckdb.Error as exc:
        labels = ", ".join(f"'{table.label}'" for table, _ in group[:3]) + (", ..." if len(group) > 3 else "")
        raise LoadError(
            f"streams {labels}: DuckDB could not load the {sum(s.lines for _, s in group)} records of"
            f" {len(group)} streams (the largest is {longest:,} bytes): {exc}"
        ) from exc
    names = ", ".join(quote(column) for column, _ in group[0][0].definitions)
    for table, spill in group:
        row = con.execute(
            f"INSERT INTO {table.target} ({names})"
            f" SELECT {names} FROM _ferryman_rows WHERE _ferryman_file = $file",
            {"file": spill.path},
        ).fetchone()
        stored = int(row[0]) if row else 0
        if stored != spill.lines:
            raise LoadError(
                f"stream '{table.label}': DuckDB stored {stored} of {spill.lines} records"
                f" (the largest is {spill.longest:,} bytes); no state covering them was confirmed"
            )
    con.execute("DROP TABLE _ferryman_rows")


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
