"""A connector that writes a line without end: the worker reads up to FERRYMAN_MAX_LINE_MB of it
and fails the job in one line, instead of holding it all until the machine kills the process
(and every other job in it). What the sync committed before stays committed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_cli_jobs import Cli
from tests.e2e.test_cli_wedged import scripted_connection, wrapper

LIMIT_MB = "4"  # the default is 256 MiB: a test needs no more than a few to show the cut


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home, FERRYMAN_MAX_LINE_MB=LIMIT_MB, SYNC_JOB_MAX_ATTEMPTS="1")


@pytest.mark.parametrize("loop", ["C", "Python"])
def test_a_source_line_without_end_fails_the_sync_and_keeps_what_was_committed(
    cli: Cli, tmp_path: Path, loop: str
) -> None:
    if loop == "Python":  # the record path without its C scan (as with a namespace mapping)
        cli.env["FERRYMAN_NO_EXTENSION"] = "1"
    output = tmp_path / "out.jsonl"
    steps = [{"records": 3}, {"state": {"name": "users"}}, {"endless_line": True}]
    scripted_connection(cli, tmp_path, steps, output)
    done = cli("connections", "sync", "conn", "--json", code=1)
    assert "Traceback" not in done.stderr
    shown = json.loads(done.stdout)
    assert shown["job"]["status"] == "failed"
    [failure] = shown["attempts"][0]["failures"]
    assert (failure["origin"], failure["type"]) == ("source", "system_error")
    assert failure["message"].startswith(
        f"the source sent a line longer than {LIMIT_MB} MiB (FERRYMAN_MAX_LINE_MB)"
    )
    [stream] = shown["attempts"][0]["streams"]
    assert stream["records_committed"] == 3
    [state] = cli.json("state", "show", "conn")["state"]
    assert state["stream"]["stream_state"] == {"cursor": 3}  # kept
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["record"]["data"]["id"] for r in records if r["type"] == "RECORD"] == [1, 2, 3]


def test_a_discover_line_without_end_fails_the_discover_in_one_line(cli: Cli, tmp_path: Path) -> None:
    source = {"discover_steps": [{"endless_line": True}]}
    done = cli("discover", wrapper(tmp_path, "scripted_source"), "--config", json.dumps(source), code=1)
    assert "Traceback" not in done.stderr
    assert (
        f"the connector sent a line longer than {LIMIT_MB} MiB (FERRYMAN_MAX_LINE_MB)"
        in done.stderr + done.stdout
    )
