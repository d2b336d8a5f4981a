"""A connector that logs without end: the attempt log stops growing at FERRYMAN_MAX_ATTEMPT_LOG_MB,
keeping its head, one note of what was left out, the connectors' last lines and every line of
the worker's and the platform's own (the failure, the attempt's end), while the records go on
flowing and the sync ends as it would have. Before, 50 MB of stderr made a 70 MB log: one job
could fill the disk under the store and every other job's log."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.e2e.api_server import running_server
from tests.e2e.test_cli_jobs import Cli, wait_for
from tests.e2e.test_cli_wedged import scripted_connection

LIMIT_MB = 1  # the default is 256 MiB; a test shows the cut with a little of it
LIMIT = LIMIT_MB << 20
MARGIN = 64 << 10  # the notes, the worker's and the platform's lines written past the limit
NOISE = "noise " * 20  # ~130 bytes a line once logged: 400,000 of them are 50 MB of stderr


def _cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home", FERRYMAN_MAX_ATTEMPT_LOG_MB=str(LIMIT_MB), SYNC_JOB_MAX_ATTEMPTS="1")


def _records(output: Path) -> list[int]:
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    return [m["record"]["data"]["id"] for m in lines if m["type"] == "RECORD"]


def test_a_source_writing_50_mb_of_stderr_keeps_its_log_under_the_limit_and_every_record(
    tmp_path: Path,
) -> None:
    cli = _cli(tmp_path)
    output = tmp_path / "out.jsonl"
    steps = [
        {"records": 1000},
        {"state": {"name": "users"}},
        {"stderr": NOISE, "repeat": 400_000},
        {"records": 1000},
        {"state": {"name": "users"}},
        {"stderr": "last words of the source"},
        {"exit": 1},
    ]
    scripted_connection(cli, tmp_path, steps, output)
    shown = json.loads(cli("connections", "sync", "conn", "--json", code=1).stdout)

    # The sync is what it would have been without the limit: every record, one failure (the exit).
    assert shown["job"]["status"] == "failed"
    [attempt] = shown["attempts"]
    [failure] = attempt["failures"]
    assert (failure["origin"], failure["type"]) == ("source", "system_error")
    assert failure["message"].startswith("the source exited with code 1")
    assert attempt["streams"][0]["records_committed"] == 2000
    assert _records(output) == list(range(1, 2001))

    job_id = str(shown["job"]["id"])
    log = tmp_path / "home" / "workspace" / job_id / "0" / "logs.log"
    size = log.stat().st_size
    assert size <= LIMIT + MARGIN, f"{size} bytes"
    lines = log.read_text().splitlines()
    assert "attempt 0 started" in lines[0]  # the head is kept ...
    assert any(f"{NOISE} 0" in line for line in lines[:50])
    [note] = [line for line in lines if "of connector output left out of this log" in line]
    left_out = int(note.split(" worker WARN ")[1].split(" ")[0])
    assert left_out > 300_000  # ... and stated, once
    assert any(f"{NOISE} 399999" in line for line in lines)  # ... and the tail

    # The connectors' last lines come before what the worker says of their exit.
    def where(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    last_words = where("source INFO last words of the source 0")
    assert where(" left out of this log ") < last_words < where("ERROR source failure (system_error)")
    assert lines[-1].endswith(f"job {job_id} attempt 0 ended: job is failed")

    # Every reader shows the end of the capped log.
    tail = cli.json("jobs", "logs", job_id, "--tail", "3")["lines"]
    assert tail[-1].endswith("ended: job is failed")
    with running_server(tmp_path / "home") as server, httpx.Client(base_url=server.url) as client:
        api = client.get(f"/v1/ferryman/jobs/{job_id}/log", params={"lines": 50})
        assert api.status_code == 200 and api.json()["lines"][-1].endswith("ended: job is failed")
        page = client.get(f"/jobs/{job_id}")
        assert page.status_code == 200
        assert "last words of the source" in page.text and "of connector output left out" in page.text


def test_a_source_in_a_loop_of_log_messages_keeps_its_log_under_the_limit_and_succeeds(
    tmp_path: Path,
) -> None:
    cli = _cli(tmp_path)
    output = tmp_path / "out.jsonl"
    steps = [
        {"records": 500},
        {"log": f"debug {NOISE}", "level": "DEBUG", "repeat": 100_000},
        {"records": 500},
        {"state": {"name": "users"}},
        {"log": "the end of the read"},
    ]
    scripted_connection(cli, tmp_path, steps, output)
    shown = json.loads(cli("connections", "sync", "conn", "--json").stdout)

    assert shown["job"]["status"] == "succeeded"
    assert _records(output) == list(range(1, 1001))
    job_id = str(shown["job"]["id"])
    log = tmp_path / "home" / "workspace" / job_id / "0" / "logs.log"
    assert log.stat().st_size <= LIMIT + MARGIN
    lines = log.read_text().splitlines()
    assert sum("of connector output left out of this log" in line for line in lines) == 1
    assert any(line.endswith("source INFO the end of the read") for line in lines)
    assert lines[-1].endswith(f"job {job_id} attempt 0 ended: job is succeeded")


def test_a_sync_killed_past_the_limit_keeps_the_connectors_last_lines(tmp_path: Path) -> None:
    """Past the limit, the connectors' last lines wait to be written at the end. A SIGKILLed sync
    never gets there: the next command's recovery of its attempt writes them from the file the
    worker kept beside the log. Before, they died with the process: the lines that say why."""
    cli = _cli(tmp_path)
    started, release = tmp_path / "started", tmp_path / "release"
    steps = [
        {"records": 5},
        {"state": {"name": "users"}},
        {"stderr": NOISE, "repeat": 20_000},  # ~2.6 MB: past the 1 MiB limit
        {"stderr": "last words of the source"},
        {"touch": str(started)},
        {"wait_for_file": str(release), "timeout": 600},
    ]
    scripted_connection(cli, tmp_path, steps, tmp_path / "out.jsonl")
    sync = cli.start("connections", "sync", "conn")
    wait_for(started.exists, "the source to write its lines")
    (running,) = cli.json("jobs", "list", "--type", "sync")["jobs"]
    job_id = str(running["id"])
    ring = tmp_path / "home" / "workspace" / job_id / "0" / "logs.log.tail"
    # The worker reads stderr on a thread of its own: wait until it has taken the last line.
    wait_for(lambda: ring.exists() and b"last words of the source" in ring.read_bytes(), "the last line")
    sync.kill()
    cli.finish(sync)
    release.touch()  # the next sync (which recovers the killed one's attempt) runs to its end

    cli("connections", "sync", "conn")
    (killed,) = [j for j in cli.json("jobs", "list", "--type", "sync")["jobs"] if str(j["id"]) == job_id]
    assert killed["status"] == "failed"
    lines = cli.json("jobs", "logs", job_id, "--tail", "600")["lines"]
    assert any(line.endswith("source INFO last words of the source 0") for line in lines[-5:]), lines[-5:]
    assert any("the worker ended before writing the connectors' last lines" in line for line in lines)
    assert not ring.exists()
