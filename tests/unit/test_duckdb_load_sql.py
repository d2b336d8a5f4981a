"""destination-duckdb's load SQL against the SQL it replaced: the same spilled records, read by
both, must give the same rows, value for value, NULL for NULL, change for change.

The SQL before session 19 read every value twice (``json_extract`` of each path, then
``json_extract_string`` and ``json_type`` of each small value); it is kept here, as it was, as
the reference, with the rules changed since written in (marked "since"). The records are
chosen to hit every rule of ``docs/destinations.md``'s "Values that do not fit" for every
column kind, and the corners of DuckDB's JSON reader (numbers beyond
64 bits, ``1e999``, duplicate keys, keys differing only in case, escapes, nested keys).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import orjson
import pytest

from ferryman.builtin import _duckdb_tables
from ferryman.builtin._catalog import ConfiguredStream
from ferryman.builtin._columns import Kind, change, quote
from ferryman.builtin._duckdb_staging import StagingLocks
from ferryman.builtin._duckdb_tables import SQL_TYPES, Table, _rows, table_for
from ferryman.builtin._spill import Spill

# --- the reference: the load SQL as it was ----------------------------------------------------


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _json_path(parts: tuple[str, ...]) -> str:
    return "".join('."' + part.replace('"', '\\"') + '"' for part in parts)


def _reference_value(kind: Kind, j: str, s: str) -> str:
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
            f" AND {double} > -9223372036854775808"  # since: -2^63 - 1 is no BIGINT
            f" THEN TRY_CAST({double} AS BIGINT) END END"
        )
    if kind == "number":  # since: isfinite, 1e999 is no DOUBLE
        return (
            f"CASE WHEN json_type({j}) IN ('UBIGINT', 'BIGINT', 'DOUBLE')"
            f" AND isfinite(TRY_CAST({s} AS DOUBLE)) THEN TRY_CAST({s} AS DOUBLE) END"
        )
    if kind == "boolean":
        return f"CASE WHEN json_type({j}) = 'BOOLEAN' THEN TRY_CAST({s} AS BOOLEAN) END"
    return f"CASE WHEN json_type({j}) = 'VARCHAR' THEN TRY_CAST(trim({s}) AS {SQL_TYPES[kind]}) END"


def _reference_rows(table: Table) -> str:
    record = "$[1].record" if table.dedup else "$.record"
    paths = [f"{record}.emitted_at", f"{record}.meta.changes"]
    paths += [f"{record}.data{_json_path(column.path)}" for column in table.columns]
    inner = [
        "CASE WHEN TRY_CAST(s[1] AS DOUBLE) BETWEEN -62135596800000 AND 253402300799999"  # since
        " THEN to_timestamp(TRY_CAST(s[1] AS DOUBLE) / 1000) END AS _ts",
        "TRY_CAST(j[2] AS JSON[]) AS _changes",
    ]
    changes = []
    for i, column in enumerate(table.columns, 3):
        inner.append(f"{_reference_value(column.kind, f'j[{i}]', f's[{i}]')} AS _v{i}")
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
    return (
        f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM ("
        "SELECT j, list_transform(j, lambda v: json_extract_string(v, '$')) AS s FROM ("
        f"SELECT json_extract(json, {listed_paths}) AS j"
        " FROM read_ndjson_objects($spill, maximum_object_size=16777216))))"
    )


# --- the records ----------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "i": {"type": "integer"},
        "n": {"type": "number"},
        "ai": {"type": "number", "airbyte_type": "integer"},
        "b": {"type": "boolean"},
        "s": {"type": "string"},
        "d": {"type": "string", "format": "date"},
        "tz": {"type": "string", "format": "date-time"},
        "ts": {"type": "string", "format": "date-time", "airbyte_type": "timestamp_without_timezone"},
        "t": {"type": "string", "format": "time"},
        "ttz": {"type": "string", "format": "time", "airbyte_type": "time_with_timezone"},
        "o": {"type": "object"},
        "u": {"type": ["string", "integer"]},
        "Name": {"type": "integer"},  # Name and name: one struct cannot hold both
        "name": {"type": "integer"},
        'we"ird.key é': {"type": "number"},
        "id": {"type": "object", "properties": {"n": {"type": "integer"}}},
        "emitted_at": {"type": "string", "format": "date-time"},  # a property named like the record's
    },
}
KEY = [["id", "n"]]  # a nested key: a column of its own, read by path
SOURCE_CHANGE = '{"changes": [{"field": "x", "change": "NULLED", "reason": "SOURCE_X"}]}'

# Every value goes into every column, as it is written here (so 1e999, -0 and 1E2 stay as sent).
VALUES = [
    *("0", "-0", "1", "-1", "7.0", "7.5", "1e2", "1E2", "-1.5e-7", "0.1", "1.0000000000000002", "-0.0"),
    *("9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809"),
    *("-9223372036854776833", "18446744073709551615", "18446744073709551616", "1152921504606846977"),
    *("1.152921504606847e18", "123456789012345678.0", "1e308", "1e999", "-1E999", "10" + "0" * 40),
    *("true", "false", "null", "{}", "[]", "[1, 2.50]", '{"a": {"b": [1, "x"]}, "c": null}'),
    *('""', '" "', '"7"', '"1.5"', '"true"', '"Infinity"', '"NaN"', '"soon"', '"null"'),
    *('"2024-01-01"', '" 2024-01-01 "', '"2024-02-30"', '"2024-1-1"', '"\\t2024-01-01"', '"20240101"'),
    *('"2024-01-01T10:00:00Z"', '"2024-01-01T10:00:00+05:30"', '"2024-01-01 10:00:00.123456"'),
    *('"2024-01-01T10:00:00"', '" 2024-01-01T10:00:00-01:00 "', '"10:00"', '"10:00:00.5+02"', '"25:00"'),
    *('"\\u00e9t\\u00e9 \\ud83d\\udea2"', '"été 🚢"', '"a\\u0000b"', '"quote \\" back \\\\ slash \\/"'),
    *('"tab\\tnew\\nline"', '"\\u001f\\u007f\\u2028"', '"{\\"a\\": 1}"', '"[1]"', "20240101"),
]


def _data_line(data: str, emitted_at: str = "1700000000123", meta: str = "") -> bytes:
    extra = f', "meta": {meta}' if meta else ""
    record = f'{{"stream": "s", "data": {data}, "emitted_at": {emitted_at}{extra}}}'
    return f'{{"type": "RECORD", "record": {record}}}'.encode()


def _lines() -> list[bytes]:
    names = [orjson.dumps(name).decode() for name in SCHEMA["properties"]]  # type: ignore[attr-defined]
    lines = []
    for number, value in enumerate(VALUES):
        fields = ", ".join(f"{name}: {value}" for name in names if name != '"id"')
        lines.append(_data_line(f'{{{fields}, "id": {{"n": {value}}}}}', str(1700000000000 + number)))
    lines += [
        _data_line("{}"),  # every field missing
        _data_line('{"id": null, "o": null}'),
        _data_line('{"i": 1, "i": 2.5, "s": "first", "s": "second"}'),  # duplicate keys
        _data_line('{"NAME": 3, "name": 4, "I": 5, "S": "upper"}'),  # other cases of the names
        _data_line('{"Name": 1.5, "name": "x", "": 1}'),
        _data_line('{"id": {"n": 9, "N": 8}, "id.n": 7}'),
        _data_line('{"id": [1]}'),
        _data_line("[1, 2]"),
        _data_line('"data"'),
        _data_line("null"),
        _data_line('{"i": 1}', emitted_at='"1700000000000"'),
        _data_line('{"i": 1}', emitted_at="1.7e12"),
        _data_line('{"i": 1}', emitted_at="null"),
        _data_line('{"i": 1}', emitted_at='"soon"'),
        b'{"type": "RECORD", "record": {"stream": "s", "data": {"i": 1}}}',  # no emitted_at
        b'{"type": "RECORD", "record": 5}',
        _data_line('{"i": 1.5}', meta=SOURCE_CHANGE),
        _data_line('{"i": 1}', meta='{"changes": [{"field": "x", "change": "TRUNCATED", "reason": "Y"}]}'),
        _data_line('{"i": 1}', meta='{"changes": []}'),
        _data_line('{"i": "1"}', meta='{"changes": "not a list"}'),
        _data_line('{"i": 1}', meta='{"changes": null}'),
        _data_line('{"i": 1}', meta='{"changes": [1, "x", null, {}]}'),
        _data_line('{"i": 1}', meta="[]"),
        b'{"record": {"emitted_at": 1, "data": {"s": "no type field"}}, "type": "RECORD"}',
    ]
    return lines


def _rows_of(con: duckdb.DuckDBPyConnection, sql: str, spill: Spill) -> list[tuple[str | None, ...]]:
    text = con.execute(
        f"SELECT COLUMNS(* EXCLUDE (_airbyte_raw_id))::VARCHAR FROM ({sql})", {"spill": spill.path}
    ).fetchall()
    return sorted(text, key=lambda row: tuple((value is None, value or "") for value in row))


@pytest.mark.parametrize(
    ("mode", "sync_id", "generation_id"),
    [("append", None, 0), ("overwrite", 7, 3), ("append_dedup", 12, 1)],
)
def test_the_load_sql_stores_what_the_sql_it_replaced_stored(
    tmp_path: Path, mode: str, sync_id: int | None, generation_id: int
) -> None:
    stream = ConfiguredStream(
        "s",
        json_schema=SCHEMA,
        destination_sync_mode=mode,
        primary_key=KEY,
        sync_id=sync_id,
        generation_id=generation_id,
    )
    table = table_for(stream, "main")
    lines = _lines()
    old, new = Spill(str(tmp_path)), Spill(str(tmp_path))
    if table.dedup:  # the spilled line of each format, as the sink of each wrote it
        old.append(b"".join(b"[%d,%b]\n" % item for item in enumerate(lines)), len(lines), 1000)
        new.append(b"".join(b'{"s":%d,"m":%b}\n' % item for item in enumerate(lines)), len(lines), 1000)
    else:
        old.append(b"".join(line + b"\n" for line in lines), len(lines), 1000)
        new = old
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        expected = _rows_of(con, _reference_rows(table), old)
        found = _rows_of(con, _rows(table, new), new)
    assert len(expected) == len(lines)
    for want, got in zip(expected, found, strict=True):
        assert got == want
    # The records did reach every rule: values were NULLed and listed, source changes kept.
    metas = [row[1] for row in expected]
    assert any('"reason":"DESTINATION_TYPECAST_ERROR"' in (meta or "") for meta in metas)
    assert any('"reason":"SOURCE_X"' in (meta or "") for meta in metas)
    old.close()
    if new is not old:
        new.close()


def test_spills_loaded_together_in_batches_each_reach_their_own_table_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small spills of streams of one shape share a typed read, cut into batches of a few streams
    and bytes; whatever the cut, every table gets exactly its own records, none lost or crossed.
    One spill over the grouped size and one stream of another shape load on their own."""
    monkeypatch.setattr(_duckdb_tables, "GROUP_STREAMS", 3)
    monkeypatch.setattr(_duckdb_tables, "GROUP_BYTES", 700)
    monkeypatch.setattr(_duckdb_tables, "GROUPED_SPILL_BYTES", 10_000)
    narrow = {"type": "object", "properties": {"id": {"type": "integer"}, "v": {"type": "string"}}}
    wide = {"type": "object", "properties": {**narrow["properties"], "w": {"type": "number"}}}
    schemas = [narrow] * 10 + [wide]
    tables = [table_for(ConfiguredStream(f"s{i}", json_schema=s), "main") for i, s in enumerate(schemas)]
    counts = [1 + i % 4 for i in range(len(tables))]
    counts[4] = 1_000  # over GROUPED_SPILL_BYTES: its own statement
    loads = []
    for i, (table, count) in enumerate(zip(tables, counts, strict=True)):
        spill = Spill(str(tmp_path))
        lines = [_data_line(orjson.dumps({"id": n, "v": f"s{i}"}).decode()) for n in range(count)]
        spill.append(b"".join(line + b"\n" for line in lines), count, max(map(len, lines)))
        loads.append((table, spill))
    assert loads[4][1].size > _duckdb_tables.GROUPED_SPILL_BYTES
    with duckdb.connect() as con:
        for table in tables:
            _duckdb_tables.prepare(con, table, StagingLocks(str(tmp_path / "db.duckdb")))
        shared: list[int] = []
        load_group = _duckdb_tables._load_group

        def counted(con: duckdb.DuckDBPyConnection, batch: list[tuple[Table, Spill]]) -> None:
            shared.append(len(batch))
            load_group(con, batch)

        monkeypatch.setattr(_duckdb_tables, "_load_group", counted)
        _duckdb_tables.load_spills(con, loads)
        assert len(shared) >= 2 and max(shared) <= 3  # the cut made batches, each within its limits
        for i, (table, count) in enumerate(zip(tables, counts, strict=True)):
            rows = con.execute(f"SELECT id, v FROM {table.target} ORDER BY id").fetchall()
            assert rows == [(n, f"s{i}") for n in range(count)]
    for _, spill in loads:
        spill.close()
