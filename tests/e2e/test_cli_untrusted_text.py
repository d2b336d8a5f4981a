"""Text a connector sends (stream names, check and failure messages, LOG lines) and names a user
types reach the terminal as they read: rich markup in them is not interpreted, and their control
characters (ESC sequences that set the window title or clear the screen, C1 controls, bidi
overrides) are shown, not obeyed (see docs/cli.md, "Text from connectors and users").

Every command's output here goes to a pipe, where rich prints no escape sequence of its own: an
ESC in it can only have come from the connector.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import scripted_source
from tests.e2e.test_cli_jobs import Cli

# Markup rich would read as tags, an emoji code, and what a terminal would obey: an OSC that sets
# the window title (ended by BEL), a CSI that clears the screen, the C1 CSI, a right-to-left override.
MARKUP = "bad [/] [bold red]x :thumbs_up:"
CONTROLS = "\x1b]0;PWNED\x07\x1b[2J\x9b31m\u202eevil"
SHOWN = r"\x1b]0;PWNED\x07\x1b[2J\x9b31m\u202eevil"  # the same, as printed
RAW = ("\x1b", "\x07", "\x9b", "\u202e")
STREAM = "us[/]ers\x1b[2J\u202e"
STREAM_SHOWN = r"us[/]ers\x1b[2J\u202e"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home", SYNC_JOB_MAX_ATTEMPTS="1")


def assert_shown_not_obeyed(*printed: str) -> None:
    text = "".join(printed)
    assert "Traceback" not in text and "MarkupError" not in text, text
    assert not any(char in text for char in RAW), repr(text)


def write_config(tmp_path: Path, config: dict[str, Any]) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def catalog(name: str) -> dict[str, Any]:
    stream = {"name": name, "json_schema": {"type": "object"}, "supported_sync_modes": ["full_refresh"]}
    return {"streams": [stream]}


@pytest.mark.parametrize("status, code", [("FAILED", 1), ("SUCCEEDED", 0)])
def test_a_check_message_is_printed_as_it_reads_and_the_exit_code_follows_the_check(
    cli: Cli, tmp_path: Path, status: str, code: int
) -> None:
    """Before: a MarkupError traceback (exit 1 even when the check succeeded), and the ESC
    sequences reached the terminal."""
    message = f"{MARKUP} {CONTROLS}"
    config = write_config(tmp_path, {"check_steps": [{"connection_status": status, "message": message}]})
    reference = f"exec:{scripted_source(tmp_path)}"
    result = cli("check", reference, "--config", config, code=code)
    verdict = "failed" if code else "succeeded"
    assert result.stdout.strip() == f"check {verdict}: {MARKUP} {SHOWN}"
    assert_shown_not_obeyed(result.stdout, result.stderr)
    # --json keeps the message exact: the JSON encoder escapes what must be
    assert cli.json("check", reference, "--config", config, code=code)["check"]["message"] == message


def test_an_adhoc_sync_of_a_stream_named_like_markup_prints_its_summary(cli: Cli, tmp_path: Path) -> None:
    """Before: the sync ran, then its summary died in a MarkupError traceback, and so did the
    discover table. (The progress displays: tests/unit/test_cli_terminal.py.)"""
    config = write_config(
        tmp_path,
        {
            "discover_steps": [{"catalog": catalog(STREAM)}],
            "read_steps": [{"records": 3, "stream": STREAM}, {"log": f"a log line {CONTROLS}"}],
        },
    )
    reference = f"exec:{scripted_source(tmp_path)}"
    result = cli("sync", "--source", reference, "--source-config", config,
                 "--destination", "builtin:destination-devnull")  # fmt: skip
    summary = result.stdout.splitlines()
    assert any(STREAM_SHOWN in line and " 3 " in line for line in summary), result.stdout
    assert any(line.startswith("completed: 3 records") for line in summary), result.stdout
    assert_shown_not_obeyed(result.stdout, result.stderr)

    discovered = cli("discover", reference, "--config", config)
    assert STREAM_SHOWN in discovered.stdout
    assert_shown_not_obeyed(discovered.stdout, discovered.stderr)


def test_a_connection_shows_names_stream_and_failure_as_they_read(cli: Cli, tmp_path: Path) -> None:
    """Names with markup, a stream name and a failure message with control characters, through
    the store: create, sync, jobs show, jobs list, connections list. Before: the stats tables and
    failure lines carried the ESC sequences."""
    failure = {"failure_type": "system_error", "message": f"boom {MARKUP} {CONTROLS}",
               "stream_descriptor": {"name": STREAM}}  # fmt: skip
    config = {
        "discover_steps": [{"catalog": catalog(STREAM)}],
        "read_steps": [{"records": 3, "stream": STREAM}, {"trace_error": failure}],
    }
    script = scripted_source(tmp_path)
    cli("sources", "create", "s[/]rc", "--connector", f"exec:{script}", "--config", json.dumps(config))
    cli("destinations", "create", "d[b]", "--connector", "builtin:destination-devnull", "--config", "{}")
    created = cli("connections", "create", "c[/]", "--source", "s[/]rc", "--destination", "d[b]")
    assert "connection c[/] (id 1): s[/]rc -> d[b]" in created.stdout

    synced = cli("connections", "sync", "c[/]", code=1)
    expected_failure = f"source system_error [stream {STREAM_SHOWN}] (retryable): boom {MARKUP} {SHOWN}"
    assert expected_failure in synced.stderr
    assert STREAM_SHOWN in synced.stdout  # the stats table

    job_id = cli.json("jobs", "list", "--connection", "c[/]")["jobs"][0]["id"]
    shown = cli("jobs", "show", str(job_id))
    assert f"job {job_id}: sync of c[/]" in shown.stdout
    assert STREAM_SHOWN in shown.stdout and expected_failure in shown.stdout
    listed = cli("jobs", "list")
    connections = cli("connections", "list")
    assert " c[/] " in listed.stdout and "s[/]rc" in connections.stdout and "d[b]" in connections.stdout
    assert_shown_not_obeyed(*cli.printed)


def on_a_terminal(cli: Cli, *args: str) -> str:
    """What ``ferryman ARGS`` prints on stdout when stdout is a terminal (a pseudo-terminal)."""
    main, side = os.openpty()
    with subprocess.Popen(cli.argv(*args), stdout=side, stderr=subprocess.PIPE, env=cli.env) as process:
        os.close(side)
        chunks = []
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the process closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0, process.stderr.read() if process.stderr else ""
    os.close(main)
    return b"".join(chunks).decode()


def test_jobs_logs_shows_control_characters_on_a_terminal_and_keeps_them_in_a_pipe(
    cli: Cli, tmp_path: Path
) -> None:
    """Before: a LOG line's ESC sequences reached the terminal. A pipe or a file still gets the
    log's lines as they are, and --json its exact text."""
    line = f"a log line {CONTROLS}"
    config = {"read_steps": [{"records": 1}, {"log": line}]}
    cli("sources", "create", "s", "--connector", f"exec:{scripted_source(tmp_path)}", "--config",
        json.dumps(config))  # fmt: skip
    cli("destinations", "create", "d", "--connector", "builtin:destination-devnull", "--config", "{}")
    cli("connections", "create", "c", "--source", "s", "--destination", "d")
    cli("connections", "sync", "c")
    job_id = str(cli.json("jobs", "list", "--connection", "c")["jobs"][0]["id"])

    terminal = on_a_terminal(cli, "jobs", "logs", job_id)
    assert f"a log line {SHOWN}" in terminal
    assert_shown_not_obeyed(terminal)

    assert line in cli("jobs", "logs", job_id).stdout
    assert any(line in logged for logged in cli.json("jobs", "logs", job_id)["lines"])
