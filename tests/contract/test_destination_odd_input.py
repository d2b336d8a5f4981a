"""The typed destinations (DuckDB, PostgreSQL) given odd but possible input: names and values
that sources do send. Each case either stores what it was given (or NULL plus a change in
``_airbyte_meta``, as ``docs/destinations.md`` says) or fails the sync with one clear line;
never a traceback, never a silent change.

Real destination processes, read back from their real storage, as ``test_destinations`` does.
"""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.contract.destination_support import (
    TYPED,
    Target,
    complete,
    echoed,
    make_target,
    parse,
    record,
    state,
    stream,
)


@pytest.fixture(params=TYPED)
def typed(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return make_target(request.param, tmp_path, request)


def completed(catalog: Path) -> list[dict[str, Any]]:
    """The COMPLETE status of each stream of the catalog, as the worker sends them after a source
    that succeeded: without them a destination keeps nothing of a stream after its last state."""
    return [complete(entry["stream"]["name"]) for entry in orjson.loads(catalog.read_bytes())["streams"]]


def write_lines(target: Target, catalog: Path, *lines: bytes) -> subprocess.CompletedProcess[bytes]:
    """The destination given these raw input lines, then each stream's COMPLETE; its exit status
    is the caller's to judge."""
    ends = [orjson.dumps(message) for message in completed(catalog)]
    return subprocess.run(
        target.command(catalog),
        input=b"".join(line + b"\n" for line in [*lines, *ends]),
        capture_output=True,
        timeout=120,
    )


def write(target: Target, catalog: Path, *messages: dict[str, Any]) -> list[dict[str, Any]]:
    """A sync whose source succeeded: ``messages``, then each stream's COMPLETE."""
    return target.write(catalog, *messages, *completed(catalog))


def one_line_error(done: subprocess.CompletedProcess[bytes]) -> str:
    """The one TRACE error a refused sync reports: a config error, no traceback anywhere."""
    assert done.returncode == 1
    assert b"Traceback" not in done.stderr and b"Traceback" not in done.stdout
    (trace,) = [m for m in parse(done.stdout) if m["type"] == "TRACE"]
    error = trace["trace"]["error"]
    assert error["failure_type"] == "config_error"
    assert "\n" not in error["message"]
    return str(error["message"])


def meta_fields(meta: Any) -> list[str]:
    meta = orjson.loads(meta) if isinstance(meta, str) else meta
    return [change["field"] for change in meta["changes"]]


# --- names --------------------------------------------------------------------------------------


def test_streams_whose_names_differ_only_in_case(typed: Target) -> None:
    """PostgreSQL keeps quoted names apart; DuckDB does not (``Users`` is ``users``), so there
    the two streams are refused before anything is written, rather than mixed in one table."""
    properties = {"id": {"type": "integer"}}
    catalog = typed.catalog(stream("Users", properties), stream("users", properties))
    done = write_lines(
        typed,
        catalog,
        orjson.dumps(record("Users", {"id": 1})),
        orjson.dumps(record("users", {"id": 2})),
        orjson.dumps(state("users", 1)),
    )
    if typed.module == "destination_postgres":
        assert done.returncode == 0
        assert typed.rows("Users", "id") == [(1,)] and typed.rows("users", "id") == [(2,)]
        return
    assert one_line_error(done) == "streams 'Users' and 'users' would share table \"main\".\"users\""


def test_a_stream_renamed_in_case_between_syncs_lands_in_duckdbs_one_table(typed: Target) -> None:
    first = {"id": {"type": "integer"}}
    write(typed, typed.catalog(stream("Users", first)), record("Users", {"id": 1}))
    second = {**first, "v": {"type": "string"}}  # and a new property
    write(typed, typed.catalog(stream("users", second)), record("users", {"id": 2, "v": "b"}))
    if typed.module == "destination_postgres":
        assert typed.rows("Users", "id") == [(1,)] and typed.rows("users", "id, v") == [(2, "b")]
    else:
        assert typed.rows("users", "id, v") == [(1, None), (2, "b")]


def test_a_stream_wider_than_postgres_tables_is_refused_in_one_line(typed: Target) -> None:
    """PostgreSQL holds at most 1,600 columns in a table; a wider stream (at once, or by columns
    a later sync adds) is a config error, which no retry would mend. DuckDB stores it (checked
    at once only: 700 columns added one ALTER at a time cost DuckDB a minute of CI; adding
    columns is tested in the typed tables' own tests)."""
    wide = typed.catalog(stream("wider", {f"c{i}": {"type": "integer"} for i in range(1700)}))
    at_once = write_lines(typed, wide, orjson.dumps(record("wider", {"c0": 1, "c1699": 2})))
    if typed.module != "destination_postgres":
        assert at_once.returncode == 0
        assert typed.rows("wider", "c0, c1699") == [(1, 2)]
        return
    assert "properties would need more than PostgreSQL" in one_line_error(at_once)
    first = {f"a{i}": {"type": "integer"} for i in range(1000)}
    write(typed, typed.catalog(stream("wide", first)), record("wide", {"a0": 1}))
    more = {"a0": {"type": "integer"}, **{f"b{i}": {"type": "integer"} for i in range(700)}}
    done = write_lines(
        typed,
        typed.catalog(stream("wide", more)),
        orjson.dumps(record("wide", {"a0": 2, "b699": 3})),
        orjson.dumps(state("wide", 1)),
    )
    assert one_line_error(done) == (
        "stream 'wide': table public.wide would need more than PostgreSQL's 1600 columns; "
        "leave the stream out of the connection, or load it into DuckDB or JSONL"
    )
    assert typed.rows("wide", "a0") == [(1,)]  # the first sync's row, as it was


def test_properties_with_odd_names_are_stored_in_their_columns(typed: Target) -> None:
    """An empty name, and names with quotes, backslashes, ``/`` and ``~`` that differ only in
    case (DuckDB reads those by path)."""
    names = ["", 'Say "hi"\\', 'say "hi"\\', "A/b~c", "a/b~c"]
    properties = {"id": {"type": "integer"}, **{name: {"type": "string"} for name in names}}
    catalog = typed.catalog(stream("odd", properties))
    data = {"id": 1, **{name: f"value {i}" for i, name in enumerate(names)}}
    found = write(typed, catalog, record("odd", data), state("odd", 1))
    assert echoed(found) == [1]
    columns = sorted(c for c in typed.types("odd") if c != "id" and not c.startswith("_airbyte"))
    assert len(columns) == 5
    (row,) = typed.rows("odd", ", ".join(f'"{column}"' for column in columns))
    assert sorted(row) == [f"value {i}" for i in range(5)]


# --- values -------------------------------------------------------------------------------------


def test_an_emitted_at_outside_years_1_to_9999_is_a_null_extracted_at(typed: Target) -> None:
    """A source that writes emitted_at in microseconds (or nonsense) still gets its records
    stored: only their _airbyte_extracted_at is NULL, as for a missing emitted_at."""
    catalog = typed.catalog(stream("events", {"id": {"type": "integer"}}))
    found = write(
        typed,
        catalog,
        record("events", {"id": 1}, emitted_at=1_700_000_000_000_000),  # microseconds
        record("events", {"id": 2}, emitted_at=-(10**15)),
        record("events", {"id": 3}, emitted_at=1_700_000_000_000),
        state("events", 1),
    )
    assert echoed(found) == [1]
    rows = typed.rows("events", "id, _airbyte_extracted_at")
    assert [(id_, at is None) for id_, at in rows] == [(1, True), (2, True), (3, False)]
    assert rows[2][1].year == 2023


def test_numbers_a_double_or_a_bigint_cannot_hold(typed: Target) -> None:
    """Out of range for their column: NULL plus a change, and the sync goes on. In a text or
    JSON column: kept as written (a float would round them; PostgreSQL's jsonb holds them)."""
    properties = {
        "id": {"type": "integer"},
        "i": {"type": "integer"},
        "n": {"type": "number"},
        "s": {"type": "string"},
        "j": {"type": "object"},
    }
    catalog = typed.catalog(stream("nums", properties))
    big = "123456789012345678901234567890"
    lines = [
        b'{"id": 1, "i": -9223372036854775809, "n": 1e400}',
        b'{"id": 2, "i": -9223372036854775808, "n": -1.5e-7, "s": %b}' % big.encode(),
        b'{"id": 3, "s": 0.1000000000000000055511151231257827,'
        b' "j": {"big": %b, "exact": 0.30000000000000004, "huge": 1e400, "long": 0.10000000000000000001}}'
        % big.encode(),
    ]
    done = write_lines(
        typed,
        catalog,
        *(b'{"type":"RECORD","record":{"stream":"nums","emitted_at":1,"data":%b}}' % line for line in lines),
        orjson.dumps(state("nums", 1)),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert echoed(parse(done.stdout)) == [1]
    rows = typed.query('SELECT id, i, n, s, CAST(j AS VARCHAR), _airbyte_meta FROM "nums" ORDER BY id')
    assert [row[:3] for row in rows] == [(1, None, None), (2, -(2**63), -1.5e-7), (3, None, None)]
    assert [meta_fields(row[5]) for row in rows] == [["i", "n"], [], []]
    assert rows[1][3] == big
    stored = json.loads(rows[2][4], parse_float=Decimal)
    assert {key: stored[key] for key in ("big", "exact", "huge")} == {
        "big": int(big),
        "exact": Decimal("0.30000000000000004"),
        "huge": Decimal("1e400"),
    }
    if typed.module == "destination_postgres":  # DuckDB reads a fraction as a double (documented)
        assert rows[2][3] == "0.1000000000000000055511151231257827"
        assert stored["long"] == Decimal("0.10000000000000000001")


def test_a_time_with_time_zone_written_with_z_is_stored(typed: Target) -> None:
    """``10:00:00Z`` is ISO 8601 for 10:00 UTC: DuckDB's TIMETZ does not read the ``Z``, so it was
    NULL plus a change there while PostgreSQL stored it. Both store it now, in either way DuckDB
    reads a column (``at`` as a field of the record's struct, ``At`` by path: the names differ
    only in case)."""
    timetz = {"type": "string", "format": "time", "airbyte_type": "time_with_timezone"}
    catalog = typed.catalog(stream("shifts", {"id": {"type": "integer"}, "at": timetz, "At": timetz}))
    found = write(
        typed, catalog, record("shifts", {"id": 1, "at": "10:00:00Z", "At": "11:30:00Z"}), state("shifts", 1)
    )
    assert echoed(found) == [1]
    columns = sorted(c for c in typed.types("shifts") if c != "id" and not c.startswith("_airbyte"))
    (row,) = typed.rows("shifts", ", ".join(f'"{column}"' for column in [*columns, "_airbyte_meta"]))
    *times, meta = row
    assert sorted((t.hour, t.minute, t.utcoffset().total_seconds()) for t in times) == [
        (10, 0, 0),
        (11, 30, 0),
    ]
    assert meta_fields(meta) == []
