"""The pieces the built-in connectors share: line reading, state finding, catalogs and states;
and destination-duckdb's waiting for its file and checking of what it stored."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import orjson
import pytest

from ferryman.builtin import _duckdb_staging
from ferryman.builtin._catalog import (
    ConfiguredStream,
    StreamKey,
    completed_stream,
    parse_catalog,
    parse_input_state,
    state_scope,
)
from ferryman.builtin._destination import Unfinished, load, read_chunks
from ferryman.builtin._duckdb_file import LockTimeout, open_database
from ferryman.builtin._duckdb_staging import StagingLocks
from ferryman.builtin._duckdb_tables import LoadError, load_spill, prepare, table_for
from ferryman.builtin._runtime import Output, json_text
from ferryman.builtin._spill import Spill
from ferryman.builtin.destination_devnull import discard
from ferryman.builtin.source_bench import record_template


def _state(name: str, value: object) -> bytes:
    message = {
        "type": "STATE",
        "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": name}, "stream_state": value}},
    }
    return orjson.dumps(message)


def _record(data: dict[str, object]) -> bytes:
    return orjson.dumps({"type": "RECORD", "record": {"stream": "s", "data": data, "emitted_at": 1}})


INPUT = [
    _record({"id": 1}),
    _state("s", {"id": 1}),
    _record({"id": 2, "STATE": '"STATE"'}),
    _record({"id": 3, "pad": "x" * 300}),
    _state("s", None),
    b'not json but has "STATE" in it',
    _state("s", {"id": 3}),
]


def _file(tmp_path: Path, data: bytes) -> int:
    path = tmp_path / "input"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


@pytest.mark.parametrize("size", [1, 2, 7, 64, 1 << 20])
@pytest.mark.parametrize("final_newline", [True, False])
def test_read_chunks_yields_whole_lines(tmp_path: Path, size: int, final_newline: bool) -> None:
    data = b"\n".join(INPUT) + (b"\n" if final_newline else b"")
    fd = _file(tmp_path, data)
    try:
        blocks = list(read_chunks(fd, size=size))
    finally:
        os.close(fd)
    assert all(block.endswith(b"\n") for block in blocks)
    assert b"".join(blocks) == b"\n".join(INPUT) + b"\n"


@pytest.mark.parametrize("size", [1, 3, 7, 64, 1 << 20])
def test_devnull_finds_every_state_whatever_the_read_size(tmp_path: Path, size: int) -> None:
    fd = _file(tmp_path, b"\n".join(INPUT))  # the last state has no newline
    out_path = tmp_path / "out"
    out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT)
    try:
        total, echoed = discard(fd, Output(out_fd), buffer_size=size)
    finally:
        os.close(fd)
        os.close(out_fd)
    assert total == len(b"\n".join(INPUT))
    assert echoed == 3
    assert out_path.read_bytes().splitlines() == [INPUT[1], INPUT[4], INPUT[6]]


def test_bench_template_is_valid_json_of_about_the_asked_size() -> None:
    template = record_template('we"ird%name', "ns", 1_700_000_000_000, 450, 4)
    line = template % (1234, 1234)
    message = orjson.loads(line)
    assert message["record"]["stream"] == 'we"ird%name'
    assert message["record"]["namespace"] == "ns"
    assert message["record"]["data"]["id"] == 1234
    assert message["record"]["data"]["name"] == "record-1234"
    assert abs(len(line) - 450) <= 2


def test_catalog_defaults_and_errors() -> None:
    (stream,) = parse_catalog(
        {"streams": [{"stream": {"name": "a", "source_defined_primary_key": [["id"]], "json_schema": {}}}]}
    )
    assert (stream.sync_mode, stream.destination_sync_mode, stream.primary_key) == (
        "full_refresh",
        "append",
        [["id"]],
    )
    with pytest.raises(ValueError, match="twice"):
        parse_catalog({"streams": [{"stream": {"name": "a"}}, {"stream": {"name": "a"}}]})
    with pytest.raises(ValueError, match="sync_mode"):
        parse_catalog({"streams": [{"stream": {"name": "a"}, "sync_mode": "sideways"}]})


def test_input_state_formats() -> None:
    stream = {
        "type": "STREAM",
        "stream": {"stream_descriptor": {"name": "a", "namespace": "n"}, "stream_state": 1},
    }
    glob = {
        "type": "GLOBAL",
        "global": {
            "shared_state": {},
            "stream_states": [{"stream_descriptor": {"name": "b"}, "stream_state": 2}],
        },
    }
    assert parse_input_state([stream, {"type": "STATE", "state": glob}]) == {("n", "a"): 1, (None, "b"): 2}
    assert parse_input_state({"c": {"id": 3}}) == {(None, "c"): {"id": 3}}
    assert parse_input_state({"type": "LEGACY", "data": {"d": 4}}) == {(None, "d"): 4}
    assert parse_input_state(None) == {}
    with pytest.raises(ValueError):
        parse_input_state([{"type": "NOPE"}])


def test_state_scope() -> None:
    assert state_scope(orjson.loads(_state("s", None))) == (None, "s")
    assert state_scope({"type": "STATE", "state": {"type": "LEGACY", "data": {}}}) is None


def _status(name: str, status: str = "COMPLETE", namespace: str | None = None) -> dict[str, object]:
    descriptor = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return {
        "type": "TRACE",
        "trace": {
            "type": "STREAM_STATUS",
            "emitted_at": 1,
            "stream_status": {"stream_descriptor": descriptor, "status": status},
        },
    }


def test_completed_stream() -> None:
    assert completed_stream(_status("s")) == (None, "s")
    assert completed_stream(_status("s", namespace="n")) == ("n", "s")
    assert completed_stream(_status("s", "STARTED")) is None
    assert completed_stream(_status("s", "INCOMPLETE")) is None
    assert completed_stream({"type": "TRACE", "trace": {"type": "ERROR", "error": {"message": "x"}}}) is None
    assert completed_stream({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "stream_status": 3}}) is None
    broken = _status("s")
    broken["trace"]["stream_status"]["stream_descriptor"] = {"namespace": "n"}  # type: ignore[index]
    assert completed_stream(broken) is None
    assert completed_stream({"type": "TRACE", "trace": None}) is None


class _FakeSink:
    """Remembers what the loader asked of it."""

    def __init__(self, *keys: StreamKey) -> None:
        self.buffers: dict[StreamKey, list[bytes]] = {key: [] for key in keys}
        self.checkpoints: list[tuple[StreamKey | None, int]] = []  # with the records before each
        self.commits: list[set[StreamKey]] = []
        self.left: dict[StreamKey, Unfinished] = {}

    def flush(self) -> None:
        for lines in self.buffers.values():
            lines.clear()

    def checkpoint(self, scope: StreamKey | None) -> None:
        self.checkpoints.append((scope, sum(map(len, self.buffers.values()))))

    def commit(self, complete: set[StreamKey]) -> None:
        self.flush()
        self.commits.append(set(complete))

    def leave_staged(self) -> dict[StreamKey, Unfinished]:
        return self.left


def _load(tmp_path: Path, sink: _FakeSink, *lines: bytes) -> list[dict[str, object]]:
    fd = _file(tmp_path, b"\n".join(lines) + b"\n")
    out_path = tmp_path / "out"
    out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        load("test", sink, Output(out_fd), fd=fd, commit_interval=3600)
    finally:
        os.close(fd)
        os.close(out_fd)
    return [orjson.loads(line) for line in out_path.read_bytes().splitlines()]


def test_the_last_commit_replaces_only_the_completed_streams(tmp_path: Path) -> None:
    sink = _FakeSink((None, "s"), (None, "t"), ("n", "s"))
    sink.left = {
        (None, "t"): Unfinished(True, 0, 4),
        (None, "s"): Unfinished(True, 2, 1),
        (None, "a"): Unfinished(False, 0, 3),
    }
    out = _load(
        tmp_path,
        sink,
        _record({"id": 1}),
        orjson.dumps(_status("s", namespace="n")),
        orjson.dumps(_status("t", "INCOMPLETE")),
        orjson.dumps({"type": "TRACE", "trace": {"type": "SOMETHING_NEW"}}),
        _state("u", {"id": 1}),
    )
    assert sink.checkpoints == [((None, "u"), 1)]  # told at once, the record before it still buffered
    assert sink.commits == [{("n", "s")}]  # a state covering a stream does not complete it
    assert [message["type"] for message in out] == ["STATE", "LOG", "LOG", "LOG"]
    logs = [message["log"]["message"] for message in out[1:]]  # type: ignore[index]
    assert all("kept the old data" in log for log in logs[:2])
    assert "'t'" in logs[0] and "dropped the 4 records received after its last state" in logs[0]
    assert "'s'" in logs[1] and "2 records committed with its states stay staged" in logs[1]
    assert "1 record received" in logs[1]
    assert "dropped the 3 records of stream 'a' received after its last state" in logs[2]
    assert "kept the old data" not in logs[2] and "reads them again" in logs[2]


def test_a_global_state_covers_every_stream(tmp_path: Path) -> None:
    sink = _FakeSink((None, "s"))
    glob = {"type": "STATE", "state": {"type": "GLOBAL", "global": {"shared_state": {}, "stream_states": []}}}
    _load(tmp_path, sink, _record({"id": 1}), orjson.dumps(glob))
    assert (sink.checkpoints, sink.commits) == ([(None, 1)], [set()])

    sink = _FakeSink((None, "s"))
    assert _load(tmp_path, sink, _record({"id": 1})) == []
    assert (sink.checkpoints, sink.commits) == ([], [set()])


# --- destination-duckdb: waiting for the file, checking what was stored ----------------------


def _hold_lock(path: Path) -> subprocess.Popen[str]:
    """Another process with the DuckDB file open for writing, until its stdin closes."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


HOLD_LOCK = (
    "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('held', flush=True); sys.stdin.read()"
)


def test_open_database_backs_off_then_gives_up(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    holder = _hold_lock(path)
    now = [100.0]
    pauses: list[float] = []
    waits: list[str] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        now[0] += seconds

    try:
        with pytest.raises(LockTimeout, match=r"gave up after waiting 5s for .*db\.duckdb"):
            open_database(str(path), 5, waits.append, clock=lambda: now[0], pause=pause)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    assert len(waits) == 1 and "Could not set lock" in waits[0]
    assert pauses[:4] == [0.02, 0.04, 0.08, 0.16] and max(pauses) == 1.0
    assert sum(pauses) == pytest.approx(5.0)
    open_database(str(path), 0, waits.append).close()  # free again: opens at once
    assert len(waits) == 1


def test_a_commit_that_stores_fewer_rows_than_records_fails(tmp_path: Path) -> None:
    """DuckDB's CSV reader once dropped a 33 MB line silently; whatever the cause, a short load
    must fail before any state is echoed. A spill that claims one record more than it holds
    stands in for the reader that loses one (no real reader is known to do it any more)."""
    table = table_for(ConfiguredStream("users"), "main")
    spill = Spill(str(tmp_path))
    spill.append(_record({"id": 1}) + b"\n" + _record({"id": 2}) + b"\n", 3, 5_000_000)
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        prepare(con, table, StagingLocks(str(tmp_path / "db.duckdb")))
        with pytest.raises(
            LoadError, match=r"stream 'users': DuckDB stored 2 of 3 records \(the largest is 5,000,000"
        ):
            load_spill(con, table, spill)
    spill.close()


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [True, False, None], "c": -2.5, "d": {"e": []}, "f": {}},
        'quote " backslash \\ slash / tab \t newline \n nul \x00 unit \x1f del \x7f',
        "non-ASCII: été, 東京, 🚢, a lone \u2028 line separator",
        [0, 10**30, 1e-7, 3.0],
    ],
)
def test_the_spec_line_encoder_writes_json_that_reads_back_the_same(value: object) -> None:
    # Built-ins answer spec with this instead of a JSON library (they cost more to import than
    # the answer): a user's UI reads that spec, so it must parse back to exactly what was meant.
    assert json.loads(json_text(value)) == value


def test_the_spec_line_encoder_refuses_what_json_cannot_say() -> None:
    for bad in (float("nan"), float("inf"), {1, 2}, b"bytes"):
        with pytest.raises((ValueError, TypeError)):
            json_text(bad)


def test_an_overwrite_that_cannot_lock_its_staging_table_names_it_by_pid_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system without flock (some network mounts) is not at hand here: a flock refusing
    with ENOLCK stands for it. The staging table is then named by pid, as before lock files, so
    other destinations judge it by the pid; the warning says what that risks."""

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(_duckdb_staging, "_flock", no_locks)
    table = table_for(ConfiguredStream("users", destination_sync_mode="overwrite", sync_id=7), "main")
    with duckdb.connect(str(tmp_path / "db.duckdb")) as con:
        warning = prepare(con, table, StagingLocks(str(tmp_path / "db.duckdb")))
    assert table.staging == f"_ferryman_staging_users_{os.getpid()}_s7"
    assert warning is not None and os.strerror(errno.ENOLCK) in warning and "another container" in warning
    assert sorted(path.name for path in tmp_path.iterdir()) == ["db.duckdb"]


class _Statements:
    """A DuckDB connection that notes each statement it runs: a spy, not a stand-in (every
    statement still runs on the real database)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, seen: list[str]) -> None:
        self._con, self._seen = con, seen

    def execute(self, sql: str, *args: object) -> duckdb.DuckDBPyConnection:
        self._seen.append(sql)
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._con, name)


def test_an_overwrite_of_many_streams_reads_the_catalog_once_and_finds_what_each_stream_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asking information_schema for each stream's staging tables and earlier rows scanned the
    whole catalog each time: 3,000 overwrite streams spent minutes before their first record
    loaded. One read serves every stream now, and each stream still finds what concerns it:
    an earlier sync's table is replaced, the staging table a dead attempt of this sync left is
    taken over (its rows kept), another sync's is dropped, and a table this sync already swapped
    in (the stream completed, then the attempt failed) is filled on, not replaced."""
    from ferryman.builtin import _duckdb_file
    from ferryman.builtin.destination_duckdb import DuckDBConfig, DuckDBSink

    path = tmp_path / "db.duckdb"
    schema = {"type": "object", "properties": {"id": {"type": "integer"}}}
    streams = [
        ConfiguredStream(f"s{i}", json_schema=schema, destination_sync_mode="overwrite", sync_id=2)
        for i in range(40)
    ]
    names = "_airbyte_raw_id UUID, _airbyte_extracted_at TIMESTAMPTZ, _airbyte_meta JSON,"
    names += " _airbyte_generation_id BIGINT, id BIGINT"

    def rows_of(sync_id: int, ids: list[int]) -> str:
        meta = orjson.dumps({"changes": [], "sync_id": sync_id}).decode()
        return ", ".join(f"(gen_random_uuid(), now(), '{meta}', 0, {i})" for i in ids)

    with duckdb.connect(str(path)) as con:
        for table, sync_id, ids in [
            ("s0", 1, [100]),  # an earlier sync's rows: replaced
            ("_ferryman_staging_s1_rdeadbeef_s2", 2, [11]),  # a dead attempt of this sync: kept
            ("_ferryman_staging_s2_rdeadbeef_s1", 1, [22]),  # a dead attempt of another sync: dropped
            ("s3", 2, [33]),  # this sync swapped it in already: filled on
            ("s4", 1, [44]),
        ]:
            con.execute(f'CREATE TABLE "{table}" ({names})')
            con.execute(f'INSERT INTO "{table}" VALUES {rows_of(sync_id, ids)}')

    seen: list[str] = []
    real = _duckdb_file.SharedFile.connection
    monkeypatch.setattr(_duckdb_file.SharedFile, "connection", lambda self: _Statements(real(self), seen))
    tables = {stream.key: table_for(stream, "main") for stream in streams}
    sink = DuckDBSink(DuckDBConfig(str(path), "main", 5), tables, Output(os.open(os.devnull, os.O_WRONLY)))
    try:
        for i, stream in enumerate(streams):
            record = {"stream": stream.name, "data": {"id": i}, "emitted_at": 1}
            sink.buffers[stream.key].append(orjson.dumps({"type": "RECORD", "record": record}))
            sink.checkpoint(stream.key)
        sink.commit({stream.key for stream in streams})
    finally:
        sink.close()

    assert len([sql for sql in seen if "information_schema" in sql]) <= 2  # not one or two per stream
    with duckdb.connect(str(path), read_only=True) as con:
        found = {
            name: sorted(row[0] for row in con.execute(f'SELECT id FROM "{name}"').fetchall())
            for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
    assert found == {f"s{i}": sorted({1: [1, 11], 3: [3, 33]}.get(i, [i])) for i in range(40)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.duckdb"]


class _OneAtATime(dict):  # type: ignore[type-arg]
    """The sink's streams, which refuse to be walked whole."""

    def items(self):  # type: ignore[no-untyped-def]
        raise AssertionError("walked every stream")

    def values(self):  # type: ignore[no-untyped-def]
        raise AssertionError("walked every stream")


def test_a_stream_state_covers_its_own_stream_without_walking_the_others(tmp_path: Path) -> None:
    """A source of thousands of streams sends a state per stream: each one walking every stream
    made the reading quadratic (a sixth of a 3,000-stream overwrite's time)."""
    from ferryman.builtin.destination_duckdb import DuckDBConfig, DuckDBSink

    streams = [ConfiguredStream(f"s{i}", destination_sync_mode="overwrite", sync_id=1) for i in range(3)]
    tables = {stream.key: table_for(stream, "main") for stream in streams}
    sink = DuckDBSink(DuckDBConfig(str(tmp_path / "db.duckdb"), "main", 5), dict(tables), Output(1))
    for table in tables.values():
        table.lines.extend([b"{}", b"{}"])
    sink.tables = _OneAtATime(tables)
    sink.checkpoint((None, "s1"))
    assert [table.covered for table in tables.values()] == [0, 2, 0]


def test_a_jsonl_stream_state_covers_its_own_stream_without_walking_the_others(tmp_path: Path) -> None:
    """As for DuckDB above: a state per stream of thousands must not walk every stream's file."""
    from ferryman.builtin.destination_jsonl import JsonlSink

    streams = [ConfiguredStream(f"s{i}", destination_sync_mode="append") for i in range(3)]
    sink = JsonlSink(tmp_path, streams)
    record = b'{"type":"RECORD","record":{"stream":"s","data":{"id":1},"emitted_at":0}}'
    for entry in sink.files.values():
        entry.lines.append(record)
    files = dict(sink.files)
    sink.files = _OneAtATime(files)
    sink.checkpoint((None, "s1"))
    assert [entry.covered for entry in files.values()] == [0, 1, 0]
    sink.files = files
    sink.close()
