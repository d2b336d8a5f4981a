"""Sources, destinations, connections, jobs, state and the worker, as a user drives them.

Every command runs as ``python -m ferryman`` in a subprocess with its own FERRYMAN_HOME (so its
own SQLite store). Most flows use the built-in source-bench, which is fast and resumes from its
state; one syncs airbyte-source-faker from PyPI into DuckDB, as the README's main job does.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ferryman.connectors import ResolvedConnector
from tests.conftest import FAKER_REF, scripted_source

PASSWORD = "pw-9f3c-never-printed"  # a credential-like field: masked by its name
SHARD_KEY = "zebra-7d1e-never-printed"  # marked airbyte_secret by the scripted source's spec
SECRETS = (PASSWORD, SHARD_KEY)
MASK = "**********"
DEADLINE_S = 60.0


class Cli:
    """Runs ferryman against one home and keeps everything it printed, to search for secrets."""

    def __init__(self, home: Path, **env: str) -> None:
        self.home = home
        self.env = {**os.environ, "FERRYMAN_HOME": str(home), "FERRYMAN_PROGRESS_INTERVAL_S": "0", **env}
        self.env.pop("FERRYMAN_DATABASE_URL", None)
        self.printed: list[str] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ferryman", *args]

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.argv(*args), capture_output=True, text=True, env=self.env, timeout=120)
        self.printed += [result.stdout, result.stderr]
        assert result.returncode == code, (
            f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        result = self(*args, "--json", code=code)
        return json.loads(result.stdout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env
        )

    def finish(self, process: subprocess.Popen[str], timeout: float = DEADLINE_S) -> tuple[str, str]:
        stdout, stderr = process.communicate(timeout=timeout)
        self.printed += [stdout, stderr]
        return stdout, stderr

    def bad_input(self, *args: str) -> str:
        """Exit 2 and one line on stderr, never a traceback; returns the line."""
        result = self(*args, code=2)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        return lines[0]


def wait_for(check: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
    """Poll ``check`` until it returns something truthy; fail after the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what} after {deadline_s}s")


def table_counts(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as db:
        tables = [row[0] for row in db.execute("select table_name from duckdb_tables()").fetchall()]
        return {t: db.execute(f'select count(*) from "{t}"').fetchall()[0][0] for t in tables}


def emitted(document: dict[str, Any]) -> dict[str, int]:
    return {s["name"]: s["records_emitted"] for s in document["attempts"][-1]["streams"]}


def committed(document: dict[str, Any]) -> dict[str, int]:
    return {s["name"]: s["records_committed"] for s in document["attempts"][-1]["streams"]}


def stream_state(name: str, last_id: int) -> dict[str, Any]:
    return {
        "type": "STREAM",
        "stream": {"stream_descriptor": {"name": name}, "stream_state": {"id": last_id}},
    }


def bench_connection(cli: Cli, tmp_path: Path, name: str, count: int, **config: Any) -> Path:
    """A source-bench source, a DuckDB destination with a password, and a connection between them."""
    database = tmp_path / f"{name}.duckdb"
    source = {"count": count, **config}
    cli("sources", "create", name, "--connector", "builtin:source-bench", "--config", json.dumps(source))
    destination = {"path": str(database), "password": PASSWORD}
    cli(
        "destinations",
        "create",
        name,
        "--connector",
        "builtin:destination-duckdb",
        "--config",
        json.dumps(destination),
    )
    cli("connections", "create", name, "--source", name, "--destination", name)
    return database


def assert_no_secret(cli: Cli) -> None:
    for text in cli.printed:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} was printed:\n{text}"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


def test_sync_jobs_state_and_reset_of_a_connection(cli: Cli, tmp_path: Path) -> None:
    database = bench_connection(cli, tmp_path, "bench", 300, streams=2, state_every=100)
    shown = cli.json("destinations", "show", "bench")
    assert shown["config"] == {"path": str(database), "password": MASK}

    connection = cli.json("connections", "show", "bench")
    assert [s["name"] for s in connection["streams"]] == ["stream_0", "stream_1"]
    assert {s["sync_mode"] for s in connection["streams"]} == {"incremental"}
    first = cli.json("connections", "sync", "bench")
    assert first["job"]["status"] == "succeeded" and first["job"]["connection"] == "bench"
    assert committed(first) == emitted(first) == {"stream_0": 300, "stream_1": 300}
    assert table_counts(database) == {"stream_0": 300, "stream_1": 300}

    jobs = cli.json("jobs", "list")["jobs"]
    assert [(j["type"], j["status"]) for j in jobs] == [
        ("sync", "succeeded"),
        ("discover_schema", "succeeded"),
    ]
    assert [j["id"] for j in cli.json("jobs", "list", "--connection", "bench")["jobs"]] == [
        first["job"]["id"]
    ]
    job_id = str(first["job"]["id"])
    details = cli.json("jobs", "show", job_id)
    assert [a["status"] for a in details["attempts"]] == ["succeeded"]
    assert committed(details) == {"stream_0": 300, "stream_1": 300}
    shown_text = cli("jobs", "show", job_id).stdout
    assert "stream_0" in shown_text and "attempt 0: succeeded" in shown_text
    log = cli("jobs", "logs", job_id).stdout
    assert " source " in log and " destination " in log
    assert len(cli.json("jobs", "logs", job_id, "--tail", "2")["lines"]) == 2

    # Incremental: the second sync starts from the stored state, so a synced stream sends nothing.
    assert cli.json("state", "show", "bench")["state"] == [
        stream_state("stream_0", 300),
        stream_state("stream_1", 300),
    ]
    assert emitted(cli.json("connections", "sync", "bench")) == {"stream_0": 0, "stream_1": 0}

    cli("state", "set", "bench", json.dumps([stream_state("stream_0", 250), stream_state("stream_1", 300)]))
    assert emitted(cli.json("connections", "sync", "bench")) == {"stream_0": 50, "stream_1": 0}
    assert table_counts(database) == {"stream_0": 300, "stream_1": 300}  # deduplicated on id
    cli("state", "clear", "bench")
    assert json.loads(cli("state", "show", "bench").stdout) == []

    reset = cli.json("connections", "reset", "bench")
    assert reset["job"]["type"] == "reset_connection" and reset["job"]["status"] == "succeeded"
    assert table_counts(database) == {"stream_0": 0, "stream_1": 0}
    assert emitted(cli.json("connections", "sync", "bench")) == {"stream_0": 300, "stream_1": 300}
    assert_no_secret(cli)


def test_detached_jobs_are_run_by_a_worker(cli: Cli, tmp_path: Path) -> None:
    database = bench_connection(cli, tmp_path, "queued", 500)
    waiting = cli.json("connections", "sync", "queued", "--detach")["job"]
    assert waiting["status"] == "pending"
    assert "live sync job" in cli.bad_input("connections", "sync", "queued", "--detach")
    assert cli.json("jobs", "cancel", str(waiting["id"]))["job"]["status"] == "cancelled"

    job_id = str(cli.json("connections", "sync", "queued", "--detach")["job"]["id"])
    worker = cli.start("worker")
    try:

        def ended() -> dict[str, Any] | None:
            document: dict[str, Any] = cli.json("jobs", "show", job_id)
            return document if document["job"]["status"] in ("succeeded", "failed", "cancelled") else None

        document = wait_for(ended, f"job {job_id} to end on the worker")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = cli.finish(worker)
    assert worker.returncode == 0, stderr
    assert document["job"]["status"] == "succeeded"
    assert document["attempts"][0]["engine_id"] in stderr  # the worker said who it is
    assert table_counts(database) == {"stream_0": 500}
    assert_no_secret(cli)


def test_ctrl_c_cancels_a_foreground_sync_and_keeps_its_committed_state(cli: Cli, tmp_path: Path) -> None:
    bench_connection(cli, tmp_path, "long", 50_000_000, state_every=5_000)
    sync = cli.start("connections", "sync", "long")

    def progressing() -> bool:
        running = cli.json("jobs", "list", "--status", "running")["jobs"]
        return bool(running) and any(committed(cli.json("jobs", "show", str(running[0]["id"]))).values())

    wait_for(progressing, "the sync to commit records")
    job_id = str(cli.json("jobs", "list", "--connection", "long")["jobs"][0]["id"])
    follower = cli.start("jobs", "logs", job_id, "--follow", "--tail", "1")
    assert follower.stdout is not None
    tail = follower.stdout.readline()  # the last line so far; then it follows the log
    sync.send_signal(signal.SIGINT)
    stdout, stderr = cli.finish(sync)
    assert sync.returncode == 1, stderr
    assert "cancelled" in stdout and "manual_cancellation" in stderr
    followed, _ = cli.finish(follower)  # --follow ends by itself when the attempt ends
    assert follower.returncode == 0 and tail and "ended: job is cancelled" in followed

    assert cli.json("jobs", "show", job_id)["job"]["status"] == "cancelled"
    failures = cli.json("jobs", "show", job_id)["attempts"][-1]["failures"]
    assert [f["type"] for f in failures] == ["manual_cancellation"]
    kept = cli.json("state", "show", "long")["state"]
    assert kept and kept[0]["stream"]["stream_state"]["id"] > 0
    assert_no_secret(cli)


def test_secrets_are_masked_in_every_output_and_log(tmp_path: Path) -> None:
    spec = {
        "connectionSpecification": {
            "type": "object",
            "properties": {
                "shard_key": {"type": "string", "airbyte_secret": True},
                "steps": {"type": "array"},
            },
        }
    }
    cli = Cli(tmp_path / "home", SCRIPTED_SPEC_STEPS=json.dumps([{"spec": spec}]))
    script = scripted_source(tmp_path)
    steps = [
        {"log": f"connecting with shard {SHARD_KEY}"},
        {"trace_error": {"failure_type": "config_error", "message": f"shard {SHARD_KEY} was refused"}},
        {"exit": 1},
    ]
    config = json.dumps({"shard_key": SHARD_KEY, "steps": steps})
    cli("sources", "create", "scripted", "--connector", f"exec:{script}", "--config", config)
    cli("destinations", "create", "duck", "--connector", "builtin:destination-duckdb", "--config",
        json.dumps({"path": str(tmp_path / "x.duckdb"), "password": PASSWORD}))  # fmt: skip
    assert cli.json("sources", "show", "scripted")["config"]["shard_key"] == MASK
    cli.json("sources", "list")
    cli("sources", "list")
    cli.json("destinations", "list")
    cli("destinations", "show", "duck")

    # The discover job that creating a connection runs fails, with the secret in its message.
    failed = cli("connections", "create", "c", "--source", "scripted", "--destination", "duck", code=1)
    assert len(failed.stderr.strip().splitlines()) == 1
    job_id = str(cli.json("jobs", "list", "--type", "discover_schema")["jobs"][0]["id"])
    details = cli.json("jobs", "show", job_id)
    assert details["job"]["status"] == "failed"
    assert [f["message"] for f in details["attempts"][0]["failures"]] == [f"shard {MASK} was refused"]
    cli("jobs", "show", job_id)
    assert f"connecting with shard {MASK}" in cli("jobs", "logs", job_id).stdout
    cli.json("jobs", "logs", job_id)
    assert_no_secret(cli)


def test_bad_input_is_one_line_and_exit_code_2(cli: Cli, tmp_path: Path) -> None:
    assert "no connection" in cli.bad_input("connections", "sync", "missing")
    assert "no job" in cli.bad_input("jobs", "show", "404")
    assert "not valid" in cli.bad_input("sources", "create", "s", "--connector", "nope", "--config", "{}")
    assert "--config" in cli.bad_input(
        "sources", "create", "s", "--connector", "builtin:source-bench", "--config", "{oops"
    )
    bench_connection(cli, tmp_path, "b", 10)
    assert "exists already" in cli.bad_input(
        "sources", "create", "b", "--connector", "builtin:source-bench", "--config", "{}"
    )
    discovers = len(cli.json("jobs", "list", "--type", "discover_schema")["jobs"])
    assert "a connection named 'b' exists already" in cli.bad_input(
        "connections", "create", "b", "--source", "b", "--destination", "b"
    )
    assert len(cli.json("jobs", "list", "--type", "discover_schema")["jobs"]) == discovers  # none run
    assert "unknown stream(s) nope" in cli.bad_input(
        "connections", "create", "c2", "--source", "b", "--destination", "b", "--streams", "nope"
    )
    no_format = (
        "connections",
        "create",
        "c3",
        "--source",
        "b",
        "--destination",
        "b",
        "--namespace",
        "customformat",
    )
    assert "--namespace customformat needs --namespace-format, e.g. " in cli.bad_input(*no_format)
    assert "nothing to change: give --stream, --schedule or --status" in cli.bad_input(
        "connections", "update", "b"
    )
    assert "STATE" in cli.bad_input("state", "set", "b", "not-a-file.json")
    assert "used by connection(s) b" in cli.bad_input("sources", "delete", "b")
    cli("connections", "delete", "b")
    cli("sources", "delete", "b")
    assert cli.json("sources", "list") == {"sources": []}
    assert [c["name"] for c in cli.json("connections", "list")["connections"]] == []


def rename(cli: Cli, table: str, row_id: int, name: str) -> None:
    """What a store written by an older ferryman may hold: a name that is a number (refused now)."""
    with sqlite3.connect(cli.home / "ferryman.db") as db:
        db.execute(f"UPDATE {table} SET name = ? WHERE id = ?", (name, row_id))


def test_a_name_that_is_a_number_never_stands_for_that_id(cli: Cli, tmp_path: Path) -> None:
    database = bench_connection(cli, tmp_path, "wanted", 7)
    bench_connection(cli, tmp_path, "decoy", 3)
    wanted = cli.json("connections", "show", "wanted")
    source_id = cli.json("sources", "show", "wanted")["id"]
    rename(cli, "actors", cli.json("sources", "show", "decoy")["id"], str(source_id))
    rename(cli, "connections", cli.json("connections", "show", "decoy")["id"], str(wanted["id"]))

    # The sync reads from its own source (7 records), not from the one named like its id (3).
    assert emitted(cli.json("connections", "sync", "wanted")) == {"stream_0": 7}
    assert table_counts(database) == {"stream_0": 7}
    # `state set` writes this connection's state, not the one named like its id.
    cli("state", "set", "wanted", json.dumps([stream_state("stream_0", 5)]))
    assert cli.json("state", "show", f"id:{wanted['id']}")["state"] == [stream_state("stream_0", 5)]
    assert cli.json("state", "show", str(wanted["id"]))["state"] == []  # the name wins: the decoy
    # Deleting deletes the row named, and leaves the one named like its id.
    cli("connections", "delete", "wanted")
    assert [c["name"] for c in cli.json("connections", "list")["connections"]] == [str(wanted["id"])]
    cli("sources", "delete", "wanted")
    assert [s["name"] for s in cli.json("sources", "list")["sources"]] == [str(source_id)]
    assert "cannot be named '12'" in cli.bad_input(
        "sources", "create", "12", "--connector", "builtin:source-bench", "--config", "{}"
    )
    assert "no source named or numbered 'id:99999999999999999999999'" in cli.bad_input(
        "sources", "show", "id:99999999999999999999999"
    )
    assert "no job 99999999999999999999999" in cli.bad_input("jobs", "show", "99999999999999999999999")


def test_the_ad_hoc_sync_writes_its_own_file_not_the_connections(cli: Cli) -> None:
    cli("sources", "create", "main", "--connector", "builtin:source-bench", "--config", '{"count": 20}')
    cli("destinations", "create", "local", "--connector", "builtin:destination-duckdb")  # data.duckdb
    cli("connections", "create", "main", "--source", "main", "--destination", "local")
    cli("connections", "sync", "main")
    main, adhoc = cli.home / "data.duckdb", cli.home / "adhoc.duckdb"
    assert table_counts(main) == {"stream_0": 20}

    # A full refresh ad hoc overwrites its tables: never the connection's.
    bench = ["sync", "--source", "builtin:source-bench", "--source-config", '{"count": 3}', "--full-refresh"]
    result = cli(*bench)
    assert f"builtin:destination-duckdb at {adhoc}" in result.stderr + result.stdout
    assert cli.json(*bench)["destination"] == f"builtin:destination-duckdb at {adhoc}"
    assert table_counts(adhoc) == {"stream_0": 3}
    assert table_counts(main) == {"stream_0": 20}


@pytest.mark.slow
def test_faker_connection_into_duckdb(tmp_path: Path, venvs_dir: Path, faker: ResolvedConnector) -> None:
    """The README's main job: airbyte-source-faker -> DuckDB as a connection, then its jobs."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "venvs").symlink_to(venvs_dir)  # faker is installed once per session
    cli, database = Cli(home), tmp_path / "faker.duckdb"
    source = {"count": 100, "seed": 7, "always_updated": False}
    cli("sources", "create", "faker", "--connector", FAKER_REF, "--config", json.dumps(source))
    cli("destinations", "create", "local", "--connector", "builtin:destination-duckdb", "--config",
        json.dumps({"path": str(database)}))  # fmt: skip
    cli("connections", "create", "faker-to-duckdb", "--source", "faker", "--destination", "local")

    result = cli("connections", "sync", "faker-to-duckdb")
    assert "sync succeeded" in result.stdout
    job_id = cli.json("jobs", "list", "--connection", "faker-to-duckdb")["jobs"][0]["id"]
    document = cli.json("jobs", "show", str(job_id))
    assert committed(document)["users"] == 100
    assert table_counts(database) == committed(document)
    types = [j["type"] for j in cli.json("jobs", "list")["jobs"]]
    assert types == ["sync", "discover_schema"]


def run_with_reader_gone(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    """The command with a stdout whose reader has gone (`ferryman jobs list | head -1` once head
    has exited): every write to it fails with EPIPE."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run(
            cli.argv(*args), stdout=writer, stderr=subprocess.PIPE, text=True, env=cli.env, timeout=120
        )
    finally:
        os.close(writer)


def test_a_reader_that_goes_away_ends_a_command_quietly_with_its_exit_code(cli: Cli, tmp_path: Path) -> None:
    cli.env["SYNC_JOB_MAX_ATTEMPTS"] = "1"
    bench_connection(cli, tmp_path, "main", 20)
    cli("destinations", "create", "nowhere", "--connector", "builtin:destination-duckdb", "--config",
        json.dumps({"path": "/proc/no-such-dir/x.duckdb"}))  # fmt: skip
    cli("connections", "create", "broken", "--source", "main", "--destination", "nowhere")

    shows = (["jobs", "list"], ["jobs", "show", "1"], ["connections", "list"], ["sources", "list"])
    for args in shows:
        shown = run_with_reader_gone(cli, *args)
        assert (shown.returncode, shown.stderr) == (0, ""), args
    synced = run_with_reader_gone(cli, "connections", "sync", "main")
    assert synced.returncode == 0, synced.stderr
    failed = run_with_reader_gone(cli, "connections", "sync", "broken")
    assert failed.returncode == 1, failed.stderr  # the job failed: a gone reader does not hide it
    assert "Traceback" not in synced.stderr + failed.stderr


# Runs ``ferryman ARGS`` with the store's opening failing on a BrokenPipeError. A mock: a socket
# whose peer closes it in the middle of a write is a race a test cannot set up, and psycopg and
# sqlite3 wrap theirs; this is what such a write raises where nothing wraps it.
BROKEN_PIPE_IN_STORE = """
import errno, os, sys
import ferryman.store.migrate as migrate

def upgrade(db):
    raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

migrate.upgrade = upgrade
sys.argv = ["ferryman", *sys.argv[1:]]
from ferryman.start import main
main()
"""


def test_a_broken_pipe_other_than_stdout_fails_the_command_in_one_line(cli: Cli) -> None:
    """Only a reader of stdout that went away ends a command quietly with exit 0. A broken pipe
    elsewhere, with stdout still read, used to be taken for it too: nothing printed, exit 0, for
    a command that did nothing."""
    for args in (["jobs", "list"], ["sources", "list", "--json"]):
        result = subprocess.run(
            [sys.executable, "-c", BROKEN_PIPE_IN_STORE, *args], capture_output=True, text=True,
            env=cli.env, timeout=120,
        )  # fmt: skip
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, (args, result.returncode, result.stderr)
        assert lines[0].startswith("error: Broken pipe: the other end of a pipe or connection"), lines
