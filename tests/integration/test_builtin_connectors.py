"""The built-in connectors, run as real processes the way Ferryman runs any connector."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from airbyte_protocol.models import AirbyteMessage

from ferryman.builtin._duckdb_file import open_database
from ferryman.workers import (
    AttemptContext,
    ConnectorInput,
    ReplicationStatus,
    ReplicationWorker,
    SyncInput,
    reset_input,
)
from tests.conftest import builtin, short_lifecycle
from tests.conftest import test_connector as scripted_connector  # renamed: not a test

MODULES = [
    "source_bench",
    "source_empty",
    "destination_duckdb",
    "destination_postgres",
    "destination_jsonl",
    "destination_devnull",
]


def command(module: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", f"ferryman.builtin.{module}", *map(str, args)]


def run(
    module: str, *args: str | Path, stdin: bytes | Path | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    if isinstance(stdin, Path):
        with stdin.open("rb") as handle:
            return subprocess.run(
                command(module, *args), stdin=handle, capture_output=True, cwd=cwd, timeout=120
            )
    return subprocess.run(command(module, *args), input=stdin, capture_output=True, cwd=cwd, timeout=120)


def parse(stdout: bytes) -> list[dict[str, Any]]:
    """Every stdout line, each checked against the official protocol models."""
    found = []
    for line in stdout.splitlines():
        AirbyteMessage.model_validate_json(line)
        found.append(orjson.loads(line))
    return found


def of_type(found: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [message for message in found if message["type"] == kind]


def write_json(path: Path, value: Any) -> Path:
    path.write_bytes(orjson.dumps(value))
    return path


def configure(
    streams: list[dict[str, Any]], sync_mode: str = "full_refresh", mode: str = "append"
) -> dict[str, Any]:
    return {
        "streams": [
            {"stream": stream, "sync_mode": sync_mode, "destination_sync_mode": mode} for stream in streams
        ]
    }


def bench_catalog(
    tmp_path: Path,
    config: Path,
    sync_mode: str = "full_refresh",
    mode: str = "append",
    name: str = "catalog.json",
) -> Path:
    done = run("source_bench", "discover", "--config", config)
    streams = of_type(parse(done.stdout), "CATALOG")[0]["catalog"]["streams"]
    return write_json(tmp_path / name, configure(streams, sync_mode, mode))


def records_by_stream(found: list[dict[str, Any]]) -> dict[str, list[int]]:
    ids: dict[str, list[int]] = {}
    for message in of_type(found, "RECORD"):
        ids.setdefault(message["record"]["stream"], []).append(message["record"]["data"]["id"])
    return ids


def state_lines(stdout: bytes) -> list[bytes]:
    return [line for line in stdout.splitlines() if orjson.loads(line)["type"] == "STATE"]


# --- every connector -------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_spec_is_a_draft07_object_schema(module: str) -> None:
    done = run(module, "spec")
    assert done.returncode == 0, done.stderr
    (message,) = parse(done.stdout)
    schema = message["spec"]["connectionSpecification"]
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert schema["type"] == "object"
    assert isinstance(schema["properties"], dict)


@pytest.mark.parametrize("module", ["source_bench", "source_empty"])
def test_spec_imports_no_more_than_the_standard_library(module: str) -> None:
    # Every spec job and `sources create` starts this process: msgspec, orjson, argparse,
    # dataclasses (inspect), typing and json (re, enum) were 27 of its 45 ms of CPU, and most of
    # what bounded a spec job's throughput.
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *command(module, "spec")[1:]], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.decode().splitlines() if "|" in line}
    heavy = {"msgspec", "orjson", "argparse", "dataclasses", "inspect", "typing", "json", "re", "enum"}
    assert imported.isdisjoint(heavy), imported & heavy
    (message,) = parse(done.stdout)
    assert message["spec"]["connectionSpecification"]["type"] == "object"


@pytest.mark.parametrize("module", MODULES)
def test_unknown_command_prints_usage_and_exits_2(module: str) -> None:
    done = run(module, "frobnicate")
    assert done.returncode == 2
    assert done.stdout == b""
    assert b"usage:" in done.stderr


# --- source-bench ----------------------------------------------------------------------------


def test_bench_check_and_discover(tmp_path: Path) -> None:
    config = write_json(tmp_path / "config.json", {"streams": ["orders", "users"]})
    (status,) = parse(run("source_bench", "check", "--config", config).stdout)
    assert status["connectionStatus"]["status"] == "SUCCEEDED"
    (catalog,) = parse(run("source_bench", "discover", "--config", config).stdout)
    streams = catalog["catalog"]["streams"]
    assert [stream["name"] for stream in streams] == ["orders", "users"]
    assert streams[0]["source_defined_primary_key"] == [["id"]]
    assert streams[0]["default_cursor_field"] == ["id"]
    assert streams[0]["json_schema"]["properties"]["id"] == {"type": "integer"}


def test_bench_bad_config(tmp_path: Path) -> None:
    config = write_json(tmp_path / "config.json", {"count": "many"})
    done = run("source_bench", "check", "--config", config)
    (status,) = parse(done.stdout)
    assert done.returncode == 0
    assert status["connectionStatus"]["status"] == "FAILED"
    assert "count" in status["connectionStatus"]["message"]

    catalog = write_json(tmp_path / "catalog.json", {"streams": []})
    done = run("source_bench", "read", "--config", config, "--catalog", catalog)
    assert done.returncode == 1
    (trace,) = parse(done.stdout)
    assert trace["trace"]["error"]["failure_type"] == "config_error"
    assert b"Traceback" not in done.stdout


def test_bench_reads_the_configured_streams_in_catalog_order(tmp_path: Path) -> None:
    config = write_json(tmp_path / "config.json", {"count": 2500, "streams": 3, "state_every": 1000})
    done = run("source_bench", "discover", "--config", config)
    streams = {s["name"]: s for s in parse(done.stdout)[0]["catalog"]["streams"]}
    catalog = write_json(tmp_path / "catalog.json", configure([streams["stream_2"], streams["stream_0"]]))
    done = run("source_bench", "read", "--config", config, "--catalog", catalog)
    assert done.returncode == 0, done.stderr
    found = parse(done.stdout)

    ids = records_by_stream(found)
    assert list(ids) == ["stream_2", "stream_0"]
    assert ids["stream_2"] == ids["stream_0"] == list(range(1, 2501))
    states = [
        (m["state"]["stream"]["stream_descriptor"]["name"], m["state"]["stream"]["stream_state"])
        for m in of_type(found, "STATE")
    ]
    assert states == [(name, {"id": n}) for name in ("stream_2", "stream_0") for n in (1000, 2000, 2500)]
    traces = [m["trace"] for m in of_type(found, "TRACE")]
    assert [t["stream_status"]["status"] for t in traces if t["type"] == "STREAM_STATUS"] == [
        "STARTED",
        "COMPLETE",
    ] * 2
    assert [t["estimate"]["row_estimate"] for t in traces if t["type"] == "ESTIMATE"] == [2500, 2500]
    first = [m["type"] for m in found[:3]]
    assert first == ["TRACE", "TRACE", "RECORD"]


def test_bench_resumes_incremental_streams_from_state(tmp_path: Path) -> None:
    config = write_json(tmp_path / "config.json", {"count": 1200, "streams": 2})
    state = write_json(
        tmp_path / "state.json",
        [
            {"type": "STREAM", "stream": {"stream_descriptor": {"name": n}, "stream_state": {"id": 700}}}
            for n in ("stream_0", "stream_1")
        ],
    )
    incremental = bench_catalog(tmp_path, config, "incremental", name="incremental.json")
    ids = records_by_stream(
        parse(
            run("source_bench", "read", "--config", config, "--catalog", incremental, "--state", state).stdout
        )
    )
    assert ids == {"stream_0": list(range(701, 1201)), "stream_1": list(range(701, 1201))}

    full = bench_catalog(tmp_path, config, "full_refresh", name="full.json")
    ids = records_by_stream(
        parse(run("source_bench", "read", "--config", config, "--catalog", full, "--state", state).stdout)
    )
    # A full-refresh stream resumes from its state too: the engine hands it one only in a retry
    # of the job that left it, whose destination kept what the state covers.
    assert ids == {"stream_0": list(range(701, 1201)), "stream_1": list(range(701, 1201))}
    ids = records_by_stream(parse(run("source_bench", "read", "--config", config, "--catalog", full).stdout))
    assert ids["stream_0"] == list(range(1, 1201))

    done_state = write_json(tmp_path / "done.json", {"stream_0": {"id": 1200}, "stream_1": {"id": 1200}})
    found = parse(
        run(
            "source_bench", "read", "--config", config, "--catalog", incremental, "--state", done_state
        ).stdout
    )
    assert of_type(found, "RECORD") == []
    assert [m["state"]["stream"]["stream_state"] for m in of_type(found, "STATE")] == [{"id": 1200}] * 2


@pytest.mark.parametrize("record_size", [200, 450, 1000])
def test_bench_output_is_deterministic_and_sized(tmp_path: Path, record_size: int) -> None:
    config = write_json(tmp_path / "config.json", {"count": 3000, "record_size": record_size})
    catalog = bench_catalog(tmp_path, config)
    outputs = [run("source_bench", "read", "--config", config, "--catalog", catalog).stdout for _ in range(2)]
    strip = re.compile(rb'"emitted_at":[0-9.]+')
    assert strip.sub(b"", outputs[0]) == strip.sub(b"", outputs[1])
    lines = [line for line in outputs[0].splitlines() if line.startswith(b'{"type":"RECORD"')]
    average = sum(len(line) + 1 for line in lines) / len(lines)
    assert abs(average - record_size) < record_size * 0.1


def test_bench_records_of_megabytes_are_written_a_few_at_a_time(tmp_path: Path) -> None:
    """2,048 records were formatted before each write whatever their size: 300 records of 2 MiB
    took 1.2 GB at once (64 MiB records, the most allowed, 128 GiB). Now a batch is about a MiB.
    The limit on the process's memory is the kernel's, as a small container's would be."""
    import resource

    size, count = 2 << 20, 300
    config = write_json(tmp_path / "config.json", {"count": count, "record_size": size})
    catalog = bench_catalog(tmp_path, config)

    def small_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (768 << 20, 768 << 20))

    out = tmp_path / "out.jsonl"
    with out.open("wb") as sink:
        done = subprocess.run(
            command("source_bench", "read", "--config", config, "--catalog", catalog),
            stdout=sink, stderr=subprocess.PIPE, preexec_fn=small_memory, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    with out.open("rb") as lines:
        sizes = [len(line) for line in lines if line.startswith(b'{"type":"RECORD"')]
    assert len(sizes) == count and all(abs(found - size) < 100 for found in sizes)


# --- source-empty ----------------------------------------------------------------------------


@pytest.mark.parametrize("state_type", ["STREAM", "GLOBAL", "LEGACY"])
def test_empty_source_emits_only_null_states(tmp_path: Path, state_type: str) -> None:
    streams = [{"name": "users"}, {"name": "orders", "namespace": "shop"}]
    config = write_json(tmp_path / "config.json", {"streams": streams, "state_type": state_type})
    (catalog_message,) = parse(run("source_empty", "discover", "--config", config).stdout)
    discovered = catalog_message["catalog"]["streams"]
    assert [(s["name"], s.get("namespace")) for s in discovered] == [("users", None), ("orders", "shop")]
    catalog = write_json(tmp_path / "catalog.json", configure(discovered, mode="overwrite"))
    done = run("source_empty", "read", "--config", config, "--catalog", catalog)
    assert done.returncode == 0, done.stderr
    found = parse(done.stdout)
    assert all(m["type"] == "STATE" for m in found)
    states = [m["state"] for m in found]
    if state_type == "STREAM":
        assert [s["stream"] for s in states] == [
            {"stream_descriptor": {"name": "users"}, "stream_state": None},
            {"stream_descriptor": {"name": "orders", "namespace": "shop"}, "stream_state": None},
        ]
    elif state_type == "GLOBAL":
        (state,) = states
        assert state["global"]["shared_state"] is None
        assert [s["stream_state"] for s in state["global"]["stream_states"]] == [None, None]
    else:
        assert states == [{"type": "LEGACY", "data": {}}]


# --- destination-duckdb ----------------------------------------------------------------------


def duckdb_config(tmp_path: Path, **extra: Any) -> Path:
    return write_json(tmp_path / "duckdb.json", {"path": str(tmp_path / "out" / "db.duckdb"), **extra})


def rows(tmp_path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(tmp_path / "out" / "db.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def bench_sync(
    tmp_path: Path, mode: str, count: int = 3000, streams: int = 2, sync_mode: str = "full_refresh"
) -> tuple[list[bytes], list[bytes]]:
    """source-bench into destination-duckdb; returns the states sent and the states echoed."""
    config = write_json(tmp_path / "bench.json", {"count": count, "streams": streams, "state_every": 1000})
    catalog = bench_catalog(tmp_path, config, sync_mode, mode, name=f"catalog-{mode}.json")
    source = run("source_bench", "read", "--config", config, "--catalog", catalog)
    assert source.returncode == 0, source.stderr
    records = tmp_path / "records.jsonl"
    records.write_bytes(source.stdout)
    done = run(
        "destination_duckdb",
        "write",
        "--config",
        duckdb_config(tmp_path),
        "--catalog",
        catalog,
        stdin=records,
    )
    assert done.returncode == 0, done.stderr
    parse(done.stdout)
    return state_lines(source.stdout), state_lines(done.stdout)


def test_duckdb_check(tmp_path: Path) -> None:
    (status,) = parse(run("destination_duckdb", "check", "--config", duckdb_config(tmp_path)).stdout)
    assert status["connectionStatus"]["status"] == "SUCCEEDED"
    assert (tmp_path / "out" / "db.duckdb").exists()

    for bad in ({}, {"path": 42}, {"path": str(tmp_path)}):
        config = write_json(tmp_path / "bad.json", bad)
        done = run("destination_duckdb", "check", "--config", config)
        (status,) = parse(done.stdout)
        assert done.returncode == 0
        assert status["connectionStatus"]["status"] == "FAILED", bad


def test_duckdb_overwrite_append_and_dedup(tmp_path: Path) -> None:
    sent, echoed = bench_sync(tmp_path, "overwrite")
    assert echoed == sent and len(sent) == 6
    assert rows(tmp_path, "SELECT count(*) FROM stream_0") == [(3000,)]
    bench_sync(tmp_path, "overwrite")
    assert rows(tmp_path, "SELECT count(*), count(DISTINCT id) FROM stream_0") == [(3000, 3000)]
    assert rows(tmp_path, "SELECT count(*) FROM stream_1") == [(3000,)]

    bench_sync(tmp_path, "append")
    assert rows(tmp_path, "SELECT count(*), count(DISTINCT id) FROM stream_0") == [(6000, 3000)]

    sent, echoed = bench_sync(tmp_path, "append_dedup")
    assert echoed == sent
    assert rows(tmp_path, "SELECT count(*), count(DISTINCT id) FROM stream_0") == [(3000, 3000)]
    bench_sync(tmp_path, "append_dedup")
    assert rows(tmp_path, "SELECT count(*), min(id), max(id) FROM stream_1") == [(3000, 1, 3000)]

    columns = dict(
        rows(
            tmp_path,
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'stream_0'",
        )
    )
    assert columns == {
        "_airbyte_raw_id": "UUID",
        "_airbyte_extracted_at": "TIMESTAMP WITH TIME ZONE",
        "_airbyte_meta": "JSON",
        "_airbyte_generation_id": "BIGINT",
        "id": "BIGINT",
        "name": "VARCHAR",
        "payload": "VARCHAR",
    }
    (name, meta) = rows(tmp_path, "SELECT name, _airbyte_meta FROM stream_0 WHERE id = 7")[0]
    assert name == "record-7"
    assert orjson.loads(meta) == {"changes": [], "sync_id": None}
    assert rows(
        tmp_path, "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE '_ferryman%'"
    ) == [(0,)]


def messages_in(*messages: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(m) + b"\n" for m in messages)


def record(stream: str, data: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"stream": stream, "data": data, "emitted_at": 1_700_000_000_000}
    if namespace:
        body["namespace"] = namespace
    return {"type": "RECORD", "record": body}


def state(stream: str, value: Any, namespace: str | None = None) -> dict[str, Any]:
    descriptor = {"name": stream, **({"namespace": namespace} if namespace else {})}
    return {
        "type": "STATE",
        "state": {"type": "STREAM", "stream": {"stream_descriptor": descriptor, "stream_state": value}},
    }


def complete(stream: str, namespace: str | None = None, status: str = "COMPLETE") -> dict[str, Any]:
    """The TRACE the worker sends for each stream once the source has succeeded."""
    descriptor = {"name": stream, **({"namespace": namespace} if namespace else {})}
    return {
        "type": "TRACE",
        "trace": {
            "type": "STREAM_STATUS",
            "emitted_at": 1_700_000_000_000,
            "stream_status": {"stream_descriptor": descriptor, "status": status},
        },
    }


USERS: dict[str, Any] = {
    "name": "users",
    "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}, "v": {"type": "string"}}},
    "supported_sync_modes": ["incremental"],
    "source_defined_primary_key": [["id"]],
}


def test_duckdb_dedup_latest_record_wins_and_namespaces_become_schemas(tmp_path: Path) -> None:
    streams = [USERS, {**USERS, "name": "events", "namespace": "audit", "source_defined_primary_key": None}]
    catalog = configure(streams, "incremental", "append_dedup")
    catalog["streams"][1]["destination_sync_mode"] = "append"
    catalog_path = write_json(tmp_path / "catalog.json", catalog)
    config = duckdb_config(tmp_path)
    first = messages_in(
        record("users", {"id": 1, "v": "a"}),
        record("users", {"id": 2, "v": "b"}),
        record("users", {"id": 1, "v": "c"}),
        record("events", {"v": "x"}, "audit"),
        record("ghosts", {"id": 9}),
        state("users", {"cursor": 1}),
        state("events", None, "audit"),
    )
    done = run("destination_duckdb", "write", "--config", config, "--catalog", catalog_path, stdin=first)
    assert done.returncode == 0, done.stderr
    found = parse(done.stdout)
    assert [m["state"]["stream"]["stream_state"] for m in of_type(found, "STATE")] == [{"cursor": 1}, None]
    assert any("ghosts" in m["log"]["message"] for m in of_type(found, "LOG"))

    second = messages_in(record("users", {"id": 2, "v": "d"}), record("users", {"id": 3, "v": "e"}))
    assert (
        run(
            "destination_duckdb", "write", "--config", config, "--catalog", catalog_path, stdin=second
        ).returncode
        == 0
    )
    users = rows(tmp_path, "SELECT id, v FROM users ORDER BY id")
    assert users == [(1, "c"), (2, "d"), (3, "e")]
    assert rows(tmp_path, "SELECT count(*) FROM audit.events") == [(1,)]
    assert rows(tmp_path, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'ghosts'") == [
        (0,)
    ]


def test_duckdb_dedup_without_primary_key_is_a_config_error(tmp_path: Path) -> None:
    catalog = configure([{**USERS, "source_defined_primary_key": None}], "incremental", "append_dedup")
    catalog_path = write_json(tmp_path / "catalog.json", catalog)
    done = run(
        "destination_duckdb",
        "write",
        "--config",
        duckdb_config(tmp_path),
        "--catalog",
        catalog_path,
        stdin=b"",
    )
    assert done.returncode == 1
    (trace,) = parse(done.stdout)
    assert trace["trace"]["error"]["failure_type"] == "config_error"


def test_duckdb_overwrite_replaces_the_table_only_once_the_stream_completed(tmp_path: Path) -> None:
    bench_sync(tmp_path, "overwrite", count=3000, streams=1)
    catalog = write_json(tmp_path / "catalog.json", configure([USERS], mode="overwrite"))
    args: list[str | Path] = ["--config", duckdb_config(tmp_path), "--catalog", catalog]

    # Killed before any state: the old table is untouched.
    proc = subprocess.Popen(
        command("destination_duckdb", "write", *args), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(messages_in(*(record("users", {"id": i}) for i in range(50))))
    proc.stdin.flush()
    proc.kill()
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()
    assert rows(tmp_path, "SELECT count(*) FROM stream_0") == [(3000,)]

    # Killed after its state came back: what the state covers is staged, the table untouched.
    done = run(
        "destination_duckdb",
        "write",
        *args,
        stdin=messages_in(record("users", {"id": 0}), complete("users")),
    )
    assert done.returncode == 0
    assert rows(tmp_path, "SELECT count(*) FROM users") == [(1,)]
    proc = subprocess.Popen(
        command("destination_duckdb", "write", *args), stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(
        messages_in(*(record("users", {"id": i}) for i in range(1, 501)), state("users", {"n": 500}))
    )
    proc.stdin.flush()
    while (line := proc.stdout.readline()) and orjson.loads(line)["type"] != "STATE":
        pass
    assert orjson.loads(line)["state"]["stream"]["stream_state"] == {"n": 500}
    proc.kill()
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()
    assert rows(tmp_path, "SELECT count(*), min(id), max(id) FROM users") == [(1, 0, 0)]
    (staging,) = rows(
        tmp_path,
        "SELECT table_name FROM duckdb_tables() WHERE starts_with(table_name, '_ferryman_staging_users_')",
    )
    assert rows(tmp_path, f'SELECT count(*) FROM "{staging[0]}"') == [(500,)]


def test_reset_with_the_empty_source_empties_overwritten_tables(tmp_path: Path) -> None:
    bench_sync(tmp_path, "append", count=1500)
    config = write_json(tmp_path / "empty.json", {"streams": [{"name": "stream_0"}, {"name": "stream_1"}]})
    discovered = parse(run("source_empty", "discover", "--config", config).stdout)[0]["catalog"]["streams"]
    catalog = write_json(tmp_path / "reset.json", configure(discovered, mode="overwrite"))
    read = run("source_empty", "read", "--config", config, "--catalog", catalog)
    assert read.returncode == 0
    # Then the COMPLETE statuses the worker sends once the source has succeeded.
    done = run(
        "destination_duckdb",
        "write",
        "--config",
        duckdb_config(tmp_path),
        "--catalog",
        catalog,
        stdin=read.stdout + messages_in(complete("stream_0"), complete("stream_1")),
    )
    assert done.returncode == 0, done.stderr
    assert len(of_type(parse(done.stdout), "STATE")) == 2
    assert rows(tmp_path, "SELECT count(*) FROM stream_0 UNION ALL SELECT count(*) FROM stream_1") == [
        (0,),
        (0,),
    ]


def test_crlf_input_loads_into_duckdb_and_jsonl(tmp_path: Path) -> None:
    catalog = write_json(tmp_path / "catalog.json", configure([USERS]))
    lines = [record("users", {"id": i, "v": "a\r\nb"}) for i in range(3)] + [state("users", {"n": 3})]
    crlf = b"".join(orjson.dumps(m) + b"\r\n" for m in lines)
    done = run(
        "destination_duckdb", "write", "--config", duckdb_config(tmp_path), "--catalog", catalog, stdin=crlf
    )
    assert done.returncode == 0, done.stdout
    assert len(of_type(parse(done.stdout), "STATE")) == 1
    assert rows(tmp_path, "SELECT id, v FROM users ORDER BY id") == [(i, "a\r\nb") for i in range(3)]

    config = write_json(tmp_path / "jsonl.json", {"path": str(tmp_path / "files")})
    done = run("destination_jsonl", "write", "--config", config, "--catalog", catalog, stdin=crlf)
    assert done.returncode == 0, done.stdout
    written = (tmp_path / "files" / "users.jsonl").read_bytes().split(b"\n")
    assert [orjson.loads(line) for line in written if line] == [{"id": i, "v": "a\r\nb"} for i in range(3)]


# --- destination-duckdb: what it confirms, record sizes, one file shared by many syncs -------


@pytest.mark.parametrize(
    ("size", "mode"), [(3_000_000, "append"), (40_000_000, "append"), (40_000_000, "append_dedup")]
)
def test_duckdb_stores_a_large_record_before_echoing_its_state(tmp_path: Path, size: int, mode: str) -> None:
    """A 3 MB record used to fail every attempt (CSV line limit); past 32 MB it was silently lost."""
    catalog = write_json(tmp_path / "catalog.json", configure([USERS], "incremental", mode))
    big = "x" * size
    lines = messages_in(
        record("users", {"id": 1, "v": "small"}),
        record("users", {"id": 2, "v": big}),
        state("users", {"n": 2}),
    )
    done = run(
        "destination_duckdb", "write", "--config", duckdb_config(tmp_path), "--catalog", catalog, stdin=lines
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert [m["state"]["stream"]["stream_state"] for m in of_type(parse(done.stdout), "STATE")] == [{"n": 2}]
    assert rows(tmp_path, "SELECT id, length(v) FROM users ORDER BY id") == [
        (1, 5),
        (2, size),
    ]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["db.duckdb"]  # no spill file left


@pytest.mark.parametrize(
    "data", [{"v": "no id"}, {"id": None, "v": "null id"}, {"id": "seven", "v": "not an integer"}]
)
def test_duckdb_dedup_refuses_a_record_without_its_key(tmp_path: Path, data: dict[str, Any]) -> None:
    catalog = write_json(tmp_path / "catalog.json", configure([USERS], "incremental", "append_dedup"))
    config = duckdb_config(tmp_path)
    first = messages_in(record("users", {"id": 1, "v": "a"}), state("users", {"n": 1}))
    assert (
        run("destination_duckdb", "write", "--config", config, "--catalog", catalog, stdin=first).returncode
        == 0
    )

    second = messages_in(
        record("users", {"id": 1, "v": "b"}), record("users", data), state("users", {"n": 3})
    )
    done = run("destination_duckdb", "write", "--config", config, "--catalog", catalog, stdin=second)
    assert done.returncode == 1
    found = parse(done.stdout)
    assert of_type(found, "STATE") == []
    (trace,) = of_type(found, "TRACE")
    error = trace["trace"]["error"]
    assert error["failure_type"] == "config_error"
    assert "stream 'users': record #2" in error["message"] and "'id' (BIGINT)" in error["message"]
    assert rows(tmp_path, "SELECT id, v FROM users") == [(1, "a")]


def start_write(config: Path, catalog: Path, lines: bytes) -> subprocess.Popen[bytes]:
    """destination-duckdb with all its input written and stdin closed."""
    proc = subprocess.Popen(
        command("destination_duckdb", "write", "--config", config, "--catalog", catalog),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(lines)
    proc.stdin.close()
    return proc


def read_until_waiting(proc: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    """The destination's messages up to the LOG saying it waits for the database file."""
    assert proc.stdout is not None
    found = []
    while line := proc.stdout.readline():
        found.append(orjson.loads(line))
        if found[-1]["type"] == "LOG" and "waiting for" in found[-1]["log"]["message"]:
            return found
    raise AssertionError(f"the destination never said it waits: {found}")


def test_duckdb_waits_while_another_process_holds_the_file(tmp_path: Path) -> None:
    """Two syncs start while the file is held (a DuckDB shell, another sync); both finish once it is free."""
    catalog = write_json(tmp_path / "catalog.json", configure([USERS], "incremental", "append"))
    db = tmp_path / "out" / "db.duckdb"
    db.parent.mkdir()
    holder = duckdb.connect(str(db))
    procs = {}
    for schema in ("a", "b"):
        config = write_json(tmp_path / f"{schema}.json", {"path": str(db), "schema": schema})
        lines = messages_in(*(record("users", {"id": i}) for i in range(1000)), state("users", {"n": schema}))
        procs[schema] = start_write(config, catalog, lines)
    seen = {schema: read_until_waiting(proc) for schema, proc in procs.items()}
    assert all(of_type(found, "STATE") == [] for found in seen.values())
    holder.close()
    for schema, proc in procs.items():
        assert proc.stdout is not None
        rest = parse(proc.stdout.read())
        proc.stdout.close()
        assert proc.wait() == 0
        assert [m["state"]["stream"]["stream_state"] for m in of_type(rest, "STATE")] == [{"n": schema}]
    # Read once both have ended: while one still writes, a reader of the file would wait for it.
    for schema in procs:
        assert rows(tmp_path, f"SELECT count(*), count(DISTINCT id) FROM {schema}.users") == [(1000, 1000)]


def test_duckdb_gives_up_waiting_for_the_file_after_its_lock_timeout(tmp_path: Path) -> None:
    catalog = write_json(tmp_path / "catalog.json", configure([USERS]))
    config = duckdb_config(tmp_path, lock_timeout_seconds=0)
    (tmp_path / "out").mkdir()
    with duckdb.connect(str(tmp_path / "out" / "db.duckdb")):
        done = run(
            "destination_duckdb",
            "write",
            "--config",
            config,
            "--catalog",
            catalog,
            stdin=messages_in(record("users", {"id": 1}), state("users", {"n": 1})),
        )
    assert done.returncode == 1
    found = parse(done.stdout)
    assert of_type(found, "STATE") == []
    (trace,) = of_type(found, "TRACE")
    message = trace["trace"]["error"]["message"]
    assert "gave up after waiting 0s" in message and "db.duckdb" in message


def test_a_quiet_sync_lets_others_into_the_duckdb_file(tmp_path: Path) -> None:
    """A slow source must not keep the shared file from a DuckDB shell or another sync."""
    catalog = write_json(tmp_path / "catalog.json", configure([USERS]))
    proc = subprocess.Popen(
        command("destination_duckdb", "write", "--config", duckdb_config(tmp_path), "--catalog", catalog),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(messages_in(record("users", {"id": 1}), state("users", {"n": 1})))
    proc.stdin.flush()
    assert orjson.loads(proc.stdout.readline())["type"] == "STATE"
    # The source says nothing more for now: the destination lets go of the file.
    with open_database(str(tmp_path / "out" / "db.duckdb"), 60, lambda _: None) as con:
        assert con.execute("SELECT count(*) FROM users").fetchall() == [(1,)]
    proc.stdin.write(messages_in(record("users", {"id": 2}), state("users", {"n": 2})))
    proc.stdin.close()
    rest = parse(proc.stdout.read())
    proc.stdout.close()
    assert proc.wait() == 0
    assert [m["state"]["stream"]["stream_state"] for m in of_type(rest, "STATE")] == [{"n": 2}]
    assert rows(tmp_path, "SELECT id FROM users ORDER BY id") == [(1,), (2,)]


def test_two_syncs_write_into_one_duckdb_file_at_once(tmp_path: Path) -> None:
    """The README's setup: every connection shares one DuckDB destination file."""
    db = tmp_path / "out" / "db.duckdb"
    runs = {}
    for schema in ("a", "b"):
        workdir = tmp_path / schema
        workdir.mkdir()
        config = write_json(workdir / "duckdb.json", {"path": str(db), "schema": schema})
        runs[schema] = start_pipe(workdir, "destination_duckdb", config, "overwrite", 20_000, state_every=500)
    results = {schema: finish() for schema, finish in runs.items()}
    for schema, (sent, echoed) in results.items():
        assert echoed == sent and len(sent) == 80
        assert rows(tmp_path, f"SELECT count(*), count(DISTINCT id) FROM {schema}.stream_1") == [
            (20_000, 20_000)
        ]


# --- overwrite: only a completed stream replaces the old data --------------------------------

SHOP = "shop"
UNKNOWN_TRACE = {"type": "TRACE", "trace": {"type": "NOT_A_TRACE_TYPE", "emitted_at": 1, "whatever": [1]}}


class OverwriteTarget:
    """destination-duckdb or destination-jsonl, overwriting ``users`` and ``shop.users``."""

    def __init__(self, tmp_path: Path, module: str) -> None:
        self.tmp_path = tmp_path
        self.module = module
        if module == "destination_duckdb":
            self.config = duckdb_config(tmp_path)
        else:
            self.config = write_json(tmp_path / "jsonl.json", {"path": str(tmp_path / "files")})
        streams = [USERS, {**USERS, "namespace": SHOP}]
        self.catalog = write_json(tmp_path / "catalog.json", configure(streams, mode="overwrite"))

    def write(self, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        done = run(
            self.module,
            "write",
            "--config",
            self.config,
            "--catalog",
            self.catalog,
            stdin=messages_in(*messages),
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return parse(done.stdout)

    def ids(self, namespace: str | None = None) -> list[int] | None:
        """The ids stored for the stream, or None when it has no table (file) at all."""
        if self.module == "destination_duckdb":
            schema = namespace or "main"
            found = rows(
                self.tmp_path,
                f"SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}'"
                " AND table_name = 'users'",
            )
            if found == [(0,)]:
                return None
            return [row[0] for row in rows(self.tmp_path, f"SELECT id FROM {schema}.users ORDER BY id")]
        path = self.tmp_path / "files" / (f"{namespace}__users.jsonl" if namespace else "users.jsonl")
        if not path.exists():
            return None
        return sorted(orjson.loads(line)["id"] for line in path.read_bytes().splitlines())

    def leftovers(self) -> list[Any]:
        if self.module == "destination_duckdb":
            return rows(
                self.tmp_path,
                "SELECT table_name FROM information_schema.tables WHERE table_name LIKE '_ferryman%'",
            )
        return sorted(p.name for p in (self.tmp_path / "files").iterdir() if p.name.endswith(".ferryman-tmp"))


def users(ids: range, namespace: str | None = None) -> list[dict[str, Any]]:
    return [record("users", {"id": i}, namespace) for i in ids]


def warnings(found: list[dict[str, Any]]) -> list[str]:
    return [m["log"]["message"] for m in of_type(found, "LOG") if m["log"]["level"] == "WARN"]


OVERWRITE_TARGETS = ["destination_duckdb", "destination_jsonl"]


@pytest.mark.parametrize("module", OVERWRITE_TARGETS)
def test_overwrite_without_complete_keeps_the_old_data(tmp_path: Path, module: str) -> None:
    target = OverwriteTarget(tmp_path, module)
    target.write(*users(range(1, 6)), *users(range(1, 6), SHOP), complete("users"), complete("users", SHOP))
    assert target.ids() == target.ids(SHOP) == [1, 2, 3, 4, 5]

    # The source failed: fewer records, no state, no COMPLETE. Statuses other than COMPLETE, a
    # COMPLETE for another namespace or stream, and trace types nobody knows change nothing.
    found = target.write(
        *users(range(100, 102)),
        *users(range(100, 103), SHOP),
        complete("users", status="INCOMPLETE"),
        complete("users", "elsewhere"),
        complete("ghosts"),
        UNKNOWN_TRACE,
        {"type": "TRACE", "trace": {"type": "STREAM_STATUS", "stream_status": "broken"}},
        {"type": "TRACE", "trace": "not even an object"},
    )
    assert target.ids() == target.ids(SHOP) == [1, 2, 3, 4, 5]
    kept = warnings(found)
    assert len(kept) == 2
    assert "'users'" in kept[0] and "2 records" in kept[0] and "did not complete" in kept[0]
    assert "'shop.users'" in kept[1] and "3 records" in kept[1]
    assert target.leftovers() == []


@pytest.mark.parametrize("module", OVERWRITE_TARGETS)
def test_overwrite_replaces_the_streams_marked_complete_and_only_those(tmp_path: Path, module: str) -> None:
    target = OverwriteTarget(tmp_path, module)
    target.write(*users(range(1, 6)), *users(range(1, 6), SHOP), complete("users"), complete("users", SHOP))

    found = target.write(*users(range(10, 13)), *users(range(10, 12), SHOP), UNKNOWN_TRACE, complete("users"))
    assert target.ids() == [10, 11, 12]
    assert target.ids(SHOP) == [1, 2, 3, 4, 5]  # COMPLETE matches the namespace too
    (kept,) = warnings(found)
    assert "'shop.users'" in kept
    assert target.leftovers() == []

    # A covering state alone replaces nothing: the stream did not complete.
    found = target.write(
        *users(range(20, 22), SHOP), state("users", {"n": 2}, SHOP), *users(range(22, 24), SHOP)
    )
    assert len(of_type(found, "STATE")) == 1
    assert target.ids(SHOP) == [1, 2, 3, 4, 5]
    assert target.ids() == [10, 11, 12]
    assert target.leftovers() == []  # without a sync_id no attempt can resume what was staged


@pytest.mark.parametrize("module", OVERWRITE_TARGETS)
def test_overwrite_first_sync_that_fails_creates_nothing(tmp_path: Path, module: str) -> None:
    target = OverwriteTarget(tmp_path, module)
    target.write(*users(range(1, 4)))
    assert target.ids() is None and target.ids(SHOP) is None
    assert target.leftovers() == []


@pytest.mark.parametrize("module", OVERWRITE_TARGETS)
def test_reset_input_empties_overwritten_streams(tmp_path: Path, module: str) -> None:
    target = OverwriteTarget(tmp_path, module)
    target.write(*users(range(1, 6)), *users(range(1, 6), SHOP), complete("users"), complete("users", SHOP))

    found = target.write(
        state("users", None), state("users", None, SHOP), complete("users"), complete("users", SHOP)
    )
    assert target.ids() == target.ids(SHOP) == []
    assert len(of_type(found, "STATE")) == 2
    assert warnings(found) == []
    assert target.leftovers() == []


def test_devnull_ignores_trace_messages(tmp_path: Path) -> None:
    config = write_json(tmp_path / "devnull.json", {})
    catalog = write_json(tmp_path / "catalog.json", configure([USERS], mode="overwrite"))
    lines = messages_in(
        record("users", {"id": 1}),
        complete("STATE"),  # holds the marker devnull looks for
        UNKNOWN_TRACE,
        state("users", {"n": 1}),
        complete("users"),
    )
    done = run("destination_devnull", "write", "--config", config, "--catalog", catalog, stdin=lines)
    assert done.returncode == 0, done.stderr
    assert [m["type"] for m in parse(done.stdout)] == ["STATE", "LOG"]


def test_overwrite_and_reset_through_the_replication_worker(tmp_path: Path) -> None:
    """source-bench, then a source that fails midway, then a RESET, all into destination-duckdb."""
    destination = ConnectorInput(builtin("destination-duckdb"), {"path": str(tmp_path / "out" / "db.duckdb")})
    bench_config = {"count": 300, "streams": ["users"], "state_every": 0}
    bench_config_path = write_json(tmp_path / "bench.json", bench_config)
    catalog = orjson.loads(bench_catalog(tmp_path, bench_config_path, mode="overwrite").read_bytes())

    def sync(sync_input: SyncInput, number: int) -> ReplicationStatus:
        ctx = AttemptContext(f"job-{number}", 0, tmp_path / f"attempt-{number}", short_lifecycle())
        return ReplicationWorker().run(sync_input, ctx).status

    bench = ConnectorInput(builtin("source-bench"), bench_config)
    assert sync(SyncInput(bench, destination, catalog, []), 1) is ReplicationStatus.COMPLETED
    assert rows(tmp_path, "SELECT count(*) FROM users") == [(300,)]

    # The source dies after 40 records and no state: no COMPLETE, so the 300 rows stay.
    steps = [{"records": 40, "stream": "users"}, {"exit": 1}]
    failing = ConnectorInput(scripted_connector("scripted_source"), {"steps": steps})
    assert sync(SyncInput(failing, destination, catalog, []), 2) is ReplicationStatus.FAILED
    assert rows(tmp_path, "SELECT count(*) FROM users") == [(300,)]
    log = (tmp_path / "attempt-2" / "logs.log").read_text()
    assert "kept the old data of overwrite stream 'users'" in log

    assert sync(reset_input(destination, catalog), 3) is ReplicationStatus.COMPLETED
    assert rows(tmp_path, "SELECT count(*) FROM users") == [(0,)]
    assert "kept the old data" not in (tmp_path / "attempt-3" / "logs.log").read_text()


# --- destination-jsonl and destination-devnull -----------------------------------------------


def pipe(
    tmp_path: Path, destination: str, dest_config: Path, mode: str, count: int, state_every: int = 1000
) -> tuple[list[bytes], list[bytes]]:
    """source-bench piped into a destination; returns the states sent and echoed."""
    return start_pipe(tmp_path, destination, dest_config, mode, count, state_every)()


def start_pipe(
    tmp_path: Path, destination: str, dest_config: Path, mode: str, count: int, state_every: int = 1000
) -> Callable[[], tuple[list[bytes], list[bytes]]]:
    """Start source-bench piped into a destination; the call returned waits for both and gives
    the states sent and echoed."""
    config = write_json(tmp_path / "bench.json", {"count": count, "streams": 2, "state_every": state_every})
    catalog = bench_catalog(tmp_path, config, mode=mode, name=f"catalog-{mode}.json")
    sent = tmp_path / "sent.jsonl"
    source = subprocess.Popen(
        command("source_bench", "read", "--config", config, "--catalog", catalog), stdout=subprocess.PIPE
    )
    tee = subprocess.Popen(["tee", str(sent)], stdin=source.stdout, stdout=subprocess.PIPE)
    assert source.stdout is not None and tee.stdout is not None
    source.stdout.close()
    done = subprocess.Popen(
        command(destination, "write", "--config", dest_config, "--catalog", catalog),
        stdin=tee.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    tee.stdout.close()

    def finish() -> tuple[list[bytes], list[bytes]]:
        stdout, stderr = done.communicate(timeout=120)
        assert source.wait() == 0 and tee.wait() == 0
        assert done.returncode == 0, stderr
        parse(stdout)
        return state_lines(sent.read_bytes()), state_lines(stdout)

    return finish


def test_jsonl_overwrite_and_append(tmp_path: Path) -> None:
    config = write_json(tmp_path / "jsonl.json", {"path": str(tmp_path / "files")})
    (status,) = parse(run("destination_jsonl", "check", "--config", config).stdout)
    assert status["connectionStatus"]["status"] == "SUCCEEDED"

    sent, echoed = pipe(tmp_path, "destination_jsonl", config, "overwrite", 2500)
    assert echoed == sent and len(sent) == 6
    pipe(tmp_path, "destination_jsonl", config, "overwrite", 2500)
    lines = (tmp_path / "files" / "stream_0.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["id"] for line in lines] == list(range(1, 2501))
    pipe(tmp_path, "destination_jsonl", config, "append", 2500)
    assert len((tmp_path / "files" / "stream_1.jsonl").read_bytes().splitlines()) == 5000
    # The lock file stays (hidden, empty); nothing else is left beside the files.
    left = sorted(p.name for p in (tmp_path / "files").iterdir())
    assert left == [".ferryman-jsonl.lock", "stream_0.jsonl", "stream_1.jsonl"]


def start_jsonl(config: Path, catalog: Path, lines: bytes, close: bool) -> subprocess.Popen[bytes]:
    """destination-jsonl given ``lines``; its stdin left open unless ``close``."""
    proc = subprocess.Popen(
        command("destination_jsonl", "write", "--config", config, "--catalog", catalog),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(lines)
    proc.stdin.flush()
    if close:
        proc.stdin.close()
    return proc


def read_until_state(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    while line := proc.stdout.readline():
        if orjson.loads(line)["type"] == "STATE":
            return
    raise AssertionError("the destination ended without echoing a state")


def finish(proc: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    assert proc.stdout is not None
    rest = parse(proc.stdout.read())
    proc.stdout.close()
    assert proc.wait() == 0
    return rest


def jsonl_ids(path: Path) -> list[int]:
    return [orjson.loads(line)["id"] for line in path.read_bytes().splitlines()]


def jsonl_second_writer_waiting(
    tmp_path: Path, second_ids: range
) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], list[dict[str, Any]]]:
    """Two syncs appending to one file: the first has committed 10 rows and written 5 past its
    state, and holds the file; the second, given ``second_ids`` and its state, waits for it.
    Returns both and what the second said while it waited."""
    catalog = write_json(tmp_path / "catalog.json", configure([USERS], "incremental", "append"))
    config = write_json(tmp_path / "jsonl.json", {"path": str(tmp_path / "files")})
    first = start_jsonl(
        config,
        catalog,
        messages_in(*(record("users", {"id": i}) for i in range(10)), state("users", {"n": 1}))
        + messages_in(*(record("users", {"id": i}) for i in range(10, 15))),  # past its state
        close=False,
    )
    read_until_state(first)
    second = start_jsonl(
        config,
        catalog,
        messages_in(*(record("users", {"id": i}) for i in second_ids), state("users", {"n": 2})),
        close=True,
    )
    return first, second, read_until_waiting(second)


def test_jsonl_append_waits_while_another_sync_writes_the_file(tmp_path: Path) -> None:
    """Two syncs append to one file (two connections into one directory, or an ad-hoc sync
    beside a connection's): the second waits, saying so, and each one's rows land whole, once.
    Before, the second cut the file back to the first's last state and both wrote into it."""
    first, second, seen = jsonl_second_writer_waiting(tmp_path, range(100, 110))
    assert of_type(seen, "STATE") == []
    assert "users.jsonl, which another sync writes" in seen[-1]["log"]["message"]
    assert first.stdin is not None
    first.stdin.write(
        messages_in(*(record("users", {"id": i}) for i in range(15, 20)), state("users", {"n": 3}))
    )
    first.stdin.close()
    assert [m["state"]["stream"]["stream_state"] for m in of_type(finish(first), "STATE")] == [{"n": 3}]
    assert [m["state"]["stream"]["stream_state"] for m in of_type(finish(second), "STATE")] == [{"n": 2}]
    assert jsonl_ids(tmp_path / "files" / "users.jsonl") == [*range(20), *range(100, 110)]


def test_jsonl_writer_killed_lets_the_waiting_sync_in(tmp_path: Path) -> None:
    """A sync killed while it holds the file releases it; the waiting one cuts off what the killed
    one wrote past its last state and appends its own rows."""
    first, second, _ = jsonl_second_writer_waiting(tmp_path, range(100, 105))
    first.kill()
    assert first.wait() == -9
    assert first.stdout is not None and first.stdin is not None
    first.stdout.close()
    first.stdin.close()
    assert [m["state"]["stream"]["stream_state"] for m in of_type(finish(second), "STATE")] == [{"n": 2}]
    assert jsonl_ids(tmp_path / "files" / "users.jsonl") == [*range(10), *range(100, 105)]


@pytest.mark.parametrize("mode", ["append", "overwrite"])
def test_jsonl_on_a_full_disk_says_so_and_leaves_only_what_it_committed(small_disk: Path, mode: str) -> None:
    """The disk fills while the destination writes rows past its committed state. Before, the line
    was "destination-jsonl failed: [Errno 28] No space left on device", naming no file, and the
    file kept the uncommitted rows (which the user read as synced) and the disk stayed full
    until some later sync cut it back."""
    catalog = write_json(small_disk.parent / "catalog.json", configure([USERS], "incremental", mode))
    config = write_json(small_disk.parent / "jsonl.json", {"path": str(small_disk / "files")})
    row = {"name": "x" * 400}
    writer = start_jsonl(
        config,
        catalog,
        messages_in(*(record("users", {"id": i, **row}) for i in range(1000)), state("users", {"n": 1})),
        close=False,
    )
    read_until_state(writer)  # the first 1,000 rows are committed (~420 KB)
    assert writer.stdin is not None and writer.stdout is not None
    with contextlib.suppress(BrokenPipeError):  # ~4.2 MB more, then its state: more than the disk holds
        writer.stdin.write(
            messages_in(
                *(record("users", {"id": i, **row}) for i in range(1000, 11000)), state("users", {"n": 2})
            )
        )
        writer.stdin.close()
    found = parse(writer.stdout.read())
    writer.stdout.close()
    assert writer.wait() == 1
    assert of_type(found, "STATE") == []  # the second state was never confirmed
    (trace,) = of_type(found, "TRACE")
    written = small_disk / "files" / ("users.jsonl" if mode == "append" else "users.jsonl.ferryman-tmp")
    assert trace["trace"]["error"]["message"] == (
        f"destination-jsonl: no space left on the device writing {written}: free space there, or point"
        " the destination at another disk, then sync again (what was committed is kept; the sync resumes"
        " from its last state)"
    )
    if mode == "append":
        assert jsonl_ids(written) == list(range(1000))  # committed rows only: the rest was cut off
    else:  # a staging file without a sync_id: nobody can resume it
        assert not written.exists()
    assert shutil.disk_usage(small_disk).used < 500_000  # the space is back (2 MiB, full a moment ago)


def test_jsonl_gives_up_waiting_for_a_file_after_its_lock_timeout(tmp_path: Path) -> None:
    catalog = write_json(tmp_path / "catalog.json", configure([USERS], "incremental", "append"))
    config = write_json(tmp_path / "jsonl.json", {"path": str(tmp_path / "files")})
    holder = start_jsonl(config, catalog, messages_in(record("users", {"id": 1}), state("users", {})), False)
    read_until_state(holder)
    impatient = write_json(
        tmp_path / "now.json", {"path": str(tmp_path / "files"), "lock_timeout_seconds": 0}
    )
    done = run("destination_jsonl", "write", "--config", impatient, "--catalog", catalog, stdin=b"")
    assert holder.stdin is not None
    holder.stdin.close()
    finish(holder)
    assert done.returncode == 1
    (trace,) = of_type(parse(done.stdout), "TRACE")
    message = trace["trace"]["error"]["message"]
    assert "gave up after waiting 0s" in message and "users.jsonl, which another sync writes" in message


def test_jsonl_syncs_of_other_files_in_one_directory_run_side_by_side(tmp_path: Path) -> None:
    config = write_json(tmp_path / "jsonl.json", {"path": str(tmp_path / "files")})
    procs = []
    for name in ("users", "orders"):
        catalog = write_json(tmp_path / f"{name}.json", configure([{**USERS, "name": name}], "incremental"))
        lines = messages_in(record(name, {"id": 1}), state(name, {}))
        procs.append(start_jsonl(config, catalog, lines, close=False))
    for proc in procs:
        read_until_state(proc)  # both hold their files at once
        assert proc.stdin is not None
        proc.stdin.close()
        finish(proc)


def test_devnull_echoes_every_state_and_nothing_else(tmp_path: Path) -> None:
    config = write_json(tmp_path / "devnull.json", {})
    sent, echoed = pipe(tmp_path, "destination_devnull", config, "append", 20_000, state_every=100)
    assert echoed == sent and len(sent) == 400

    catalog = write_json(tmp_path / "catalog.json", configure([USERS]))
    tricky = messages_in(
        record("users", {"id": 1, "STATE": "x"}), state("users", {"n": 1}), record("users", {"id": 2})
    )
    done = run("destination_devnull", "write", "--config", config, "--catalog", catalog, stdin=tricky)
    assert done.returncode == 0
    assert [m["type"] for m in parse(done.stdout)] == ["STATE", "LOG"]


@pytest.mark.slow
def test_a_million_records_through_devnull_and_duckdb(tmp_path: Path) -> None:
    config = write_json(tmp_path / "devnull.json", {})
    sent, echoed = pipe(tmp_path, "destination_devnull", config, "append", 500_000)
    assert echoed == sent and len(sent) == 1000
    sent, echoed = pipe(tmp_path, "destination_duckdb", duckdb_config(tmp_path), "append", 100_000)
    assert echoed == sent and len(sent) == 200
    assert rows(tmp_path, "SELECT count(*) FROM stream_0 UNION ALL SELECT count(*) FROM stream_1") == [
        (100_000,),
        (100_000,),
    ]


def test_duckdb_drops_the_staging_table_a_killed_destination_left_and_no_other(tmp_path: Path) -> None:
    """Each destination stages an overwrite in a table of its own, so two syncs of one table never
    drop each other's; the next overwrite drops those whose owner is gone. These two are named by
    pid, without lock files, as a Ferryman before session 29 left them: the pid still decides."""
    target = OverwriteTarget(tmp_path, "destination_duckdb")
    target.write(*users(range(1, 4)), complete("users"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = {
        f"_ferryman_staging_users_{dead.pid}": "a killed destination's",
        f"_ferryman_staging_users_{os.getpid()}": "a live destination's",
    }
    with duckdb.connect(str(tmp_path / "out" / "db.duckdb")) as con:
        for name in left:
            con.execute(f'CREATE TABLE main."{name}" (id BIGINT)')

    target.write(*users(range(1, 6)), complete("users"))

    assert target.ids() == [1, 2, 3, 4, 5]
    assert target.leftovers() == [(f"_ferryman_staging_users_{os.getpid()}",)]
