"""A RECORD or STATE that is plainly one but that Ferryman cannot read or keep: a NaN or an
Infinity (what Python's json.dumps writes for such floats, so older Python CDKs and pandas-based
sources send them), a lone UTF-16 surrogate escape, a number past a double. Each fails its job in
one line saying what is wrong, and nothing committed is lost; before, most were logged as a line
of text and skipped while the sync reported success (see docs/reliability.md, "Decisions where
the issue left room").

The lines are written as text: json.dumps would not write most of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import scripted_destination, scripted_source
from tests.e2e.test_cli_jobs import Cli
from tests.e2e.test_cli_state import scripted_connection

KEPT = {"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"cursor": 1}}}


def text_line(text: str) -> dict[str, Any]:
    """A scripted connector's step that prints ``text`` as it is."""
    return {"stdout_hex": text.encode().hex()}


def state_text(cursor: str) -> str:
    """A STREAM state of stream ``users`` whose cursor is ``cursor``, a JSON value as text."""
    return (
        '{"type": "STATE", "state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, '
        f'"stream_state": {{"cursor": {cursor}}}}}}}}}'
    )


def record_text(value: str) -> str:
    record = f'{{"stream": "users", "emitted_at": 1, "data": {{"id": 9, "x": {value}}}}}'
    return f'{{"type": "RECORD", "record": {record}}}'


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    # One attempt: a retry would fail the same way, after the backoff.
    return Cli(tmp_path / "home", SYNC_JOB_MAX_ATTEMPTS="1")


def failures_of_last_job(cli: Cli) -> list[str]:
    jobs = cli.json("jobs", "list")["jobs"]
    attempts = cli.json("jobs", "show", str(jobs[0]["id"]))["attempts"]
    return [failure["message"] for failure in attempts[-1]["failures"]]


BAD_STATES = {
    "nan": ("NaN", "is not valid JSON: NaN is not a JSON number"),
    "infinity": ("Infinity", "is not valid JSON: Infinity is not a JSON number"),
    "minus-infinity": ("-Infinity", "is not valid JSON: -Infinity is not a JSON number"),
    "lone-surrogate": (
        '"\\ud800"',
        "cannot be stored: it holds a lone UTF-16 surrogate (\\ud800), which is no character",
    ),
    "past-a-double": ("1e400", "cannot be stored: 1e400 is beyond the range of a double"),
}


@pytest.mark.parametrize("cursor, why", BAD_STATES.values(), ids=BAD_STATES.keys())
def test_a_state_that_cannot_be_read_or_kept_fails_the_sync_in_one_line_and_keeps_the_committed_one(
    cli: Cli, tmp_path: Path, cursor: str, why: str
) -> None:
    """Before: NaN, Infinity and the lone surrogate were logged as a source INFO line and skipped,
    and the sync succeeded with that checkpoint missing; 1e400 failed, in other words."""
    steps = [{"records": 1}, {"state": {"name": "users"}}, {"records": 1}, text_line(state_text(cursor))]
    scripted_connection(cli, tmp_path, "c", steps)

    told = cli("connections", "sync", "c", code=1)

    line = f"the source sent a STATE of stream 'users' that {why}"
    assert f"source system_error (retryable): {line}" in told.stdout + told.stderr
    assert "Traceback" not in told.stdout + told.stderr
    assert failures_of_last_job(cli) == [line]
    assert cli.json("state", "show", "c")["state"] == [KEPT]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("extension", ["c-extension", "python-loop"])
def test_a_record_holding_a_nan_fails_the_sync_in_one_line_without_quoting_it(
    tmp_path: Path, value: str, extension: str
) -> None:
    """Before: the record was logged at INFO, data and all, and skipped; the sync succeeded with
    it missing. The ad-hoc sync, as found by hand: `ferryman sync ... --save-state`."""
    cli = Cli(
        tmp_path / "home",
        SYNC_JOB_MAX_ATTEMPTS="1",
        FERRYMAN_NO_EXTENSION=str(int(extension != "c-extension")),
    )
    secret_ish = "do-not-log-me"
    bad = record_text(value).replace('"id": 9', f'"id": 9, "note": "{secret_ish}"')
    config = tmp_path / "config.json"
    steps = [{"records": 1}, {"state": {"name": "users"}}, text_line(bad), {"records": 1}]
    config.write_text(json.dumps({"read_steps": steps}))
    saved = tmp_path / "state.json"

    told = cli(
        "sync", "--source", f"exec:{scripted_source(tmp_path)}", "--source-config", str(config),
        "--destination", "builtin:destination-devnull", "--save-state", str(saved), code=1,
    )  # fmt: skip

    line = f"the source sent a RECORD of stream 'users' that is not valid JSON: {value} is not a JSON number"
    assert f"source system_error (retryable): {line}" in told.stdout + told.stderr
    assert "Traceback" not in told.stdout + told.stderr
    assert json.loads(saved.read_text()) == [KEPT]
    logs = list((tmp_path / "home" / "workspace").glob("*/0/logs.log"))
    assert logs and all(secret_ish not in log.read_text() for log in logs)  # the discover's, the sync's


@pytest.mark.parametrize("extension", ["c-extension", "python-loop"])
def test_records_with_lone_surrogates_reach_the_destination_whichever_way_they_are_written(
    tmp_path: Path, extension: str
) -> None:
    """JSON's grammar allows a lone surrogate escape, and Python's json and Jackson read it. The C
    extension's shortcut forwarded a short compact one; before, the Python loop (a wheel without
    the extension), a long one and a spaced one were logged and skipped, the sync succeeding."""
    cli = Cli(tmp_path / "home", FERRYMAN_NO_EXTENSION=str(int(extension != "c-extension")))
    lines = [
        '{"type":"RECORD","record":{"stream":"users","data":{"id":1,"s":"\\ud800"},"emitted_at":1}}',
        record_text('"\\udc00 and a pair \\ud83d\\ude00"'),
        record_text('"\\ud800' + "p" * 3000 + '"'),  # past the shortcut's length
    ]
    output = tmp_path / "received.jsonl"
    steps = [*(text_line(line) for line in lines), {"state": {"name": "users"}}]
    scripted_connection(cli, tmp_path, "c", steps)
    destination = scripted_destination(tmp_path)
    cli("destinations", "create", "out", "--connector", f"exec:{destination}",
        "--config", json.dumps({"output": str(output)}))  # fmt: skip
    cli("connections", "create", "d", "--source", "c", "--destination", "out",
        "--stream", "users:incremental:append", "--cursor", "users=id")  # fmt: skip

    synced = cli.json("connections", "sync", "d")

    assert synced["job"]["status"] == "succeeded"
    received = output.read_bytes().decode().splitlines()
    assert received[:3] == lines
    [stream] = synced["attempts"][0]["streams"]
    assert stream["records_committed"] == 3


def test_lines_that_are_not_records_or_states_are_still_only_logged(cli: Cli, tmp_path: Path) -> None:
    """Not a change: text, even text that mentions a RECORD, and a LOG holding a NaN are logged and
    the sync goes on (only a RECORD or a STATE must not be skipped)."""
    steps = [
        text_line('not json {"type": "RECORD", "record": {"stream": "users", "data": {"x": NaN}}}'),
        text_line('{"type": "LOG", "log": {"level": "INFO", "message": "pandas says", "x": NaN}}'),
        {"records": 2},
        {"state": {"name": "users"}},
    ]
    scripted_connection(cli, tmp_path, "c", steps)

    synced = cli.json("connections", "sync", "c")

    assert synced["job"]["status"] == "succeeded"
    log = Path(synced["log"]).read_text()
    assert "not json" in log and "pandas says" in log
    assert cli.json("state", "show", "c")["state"] == [
        {**KEPT, "stream": {**KEPT["stream"], "stream_state": {"cursor": 2}}}
    ]


def test_a_destination_echoing_a_state_with_a_nan_fails_the_sync_and_keeps_the_committed_one(
    cli: Cli, tmp_path: Path
) -> None:
    """Before: the echo was logged and skipped, and the sync succeeded with a warning that the
    destination confirmed 0 of 1 states."""
    scripted_connection(cli, tmp_path, "c", [{"records": 1}, {"state": {"name": "users"}}])
    destination = scripted_destination(tmp_path)
    config = json.dumps({"own_state_text": state_text("NaN")})
    cli("destinations", "create", "nan", "--connector", f"exec:{destination}", "--config", config)
    cli("connections", "create", "d", "--source", "c", "--destination", "nan",
        "--stream", "users:incremental:append", "--cursor", "users=id")  # fmt: skip
    cli("state", "set", "d", json.dumps([KEPT]))

    told = cli("connections", "sync", "d", code=1)

    line = "the destination sent a STATE of stream 'users' that is not valid JSON: NaN is not a JSON number"
    assert line in told.stdout + told.stderr
    assert failures_of_last_job(cli) == [line]
    assert cli.json("state", "show", "d")["state"] == [KEPT]


ANSWERS = {
    "discover": (
        "discover_steps",
        '{"type": "CATALOG", "catalog": {"streams": [{"name": "users", "json_schema": {"maximum": NaN},'
        ' "supported_sync_modes": ["full_refresh"]}]}}',
        "the connector sent a CATALOG that is not valid JSON: NaN is not a JSON number",
    ),
    "check": (
        "check_steps",
        '{"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED", "message": "\\udfff"}}',
        "the connector sent a CONNECTION_STATUS that cannot be stored: it holds a lone UTF-16 surrogate"
        " (\\udfff), which is no character",
    ),
}


@pytest.mark.parametrize("command", ANSWERS)
def test_an_answer_that_cannot_be_read_fails_the_job_saying_what_is_wrong(
    cli: Cli, tmp_path: Path, command: str
) -> None:
    """Before: "discover produced no CATALOG message", calling the answer a line that is not
    Airbyte protocol (and quoting it)."""
    steps, answer, why = ANSWERS[command]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({steps: [text_line(answer)]}))

    told = cli(command, f"exec:{scripted_source(tmp_path)}", "--config", str(config), code=1)

    assert why in told.stdout + told.stderr
    assert "not Airbyte protocol" not in told.stdout + told.stderr
    assert "Traceback" not in told.stdout + told.stderr


# A CONTROL or TRACE that only Python's json reads. Airbyte's platform parses with Jackson, which
# refuses a NaN, so there the line is logged and dropped, and so it was here: a rotated OAuth
# token lost without a word (the next sync runs with the revoked one), and the raw line, new token
# and all, in the attempt log unmasked. See docs/reliability.md ("Plainly a RECORD or STATE ...").
ROTATED = "rotated-5d1f-refresh-token"


def control_text(config_extra: str) -> str:
    """A CONTROL config update carrying ROTATED, with ``config_extra`` (JSON text) in the config."""
    config = f'{{"api_key": "{ROTATED}", "rate": {config_extra}}}'
    control = f'{{"type": "CONNECTOR_CONFIG", "emitted_at": 1, "connectorConfig": {{"config": {config}}}}}'
    return f'{{"type": "CONTROL", "control": {control}}}'


def trace_error_text(emitted_at: str) -> str:
    error = (  # a lone surrogate in its stack trace: no store keeps one
        '{"failure_type": "config_error", "message": "the API says: quota exceeded",'
        ' "stack_trace": "\\ud800"}'
    )
    return f'{{"type": "TRACE", "trace": {{"type": "ERROR", "emitted_at": {emitted_at}, "error": {error}}}}}'


def warning_in(log: str, who: str) -> str:
    (line,) = [line for line in log.splitlines() if f"the {who} sent a CONTROL" in line]
    return line


NOT_SAVED = (
    "that is not valid JSON: NaN is not a JSON number; the configuration update it carries was not saved,"
    " and the next job runs with the configuration as it was"
)


def test_a_source_control_update_holding_a_nan_is_not_saved_and_says_so_without_logging_it(
    cli: Cli, tmp_path: Path
) -> None:
    steps = [{"records": 1}, text_line(control_text("NaN")), {"state": {"name": "users"}}]
    scripted_connection(cli, tmp_path, "c", steps)
    config_before = cli.json("sources", "show", "c")["config"]

    synced = cli.json("connections", "sync", "c")

    assert synced["job"]["status"] == "succeeded"  # as on Airbyte: the records and state are good
    log = Path(synced["log"]).read_text()
    assert " WARN " in warning_in(log, "source") and warning_in(log, "source").endswith(
        f"the source sent a CONTROL {NOT_SAVED}"
    )
    assert ROTATED not in log
    assert cli.json("sources", "show", "c")["config"] == config_before


def test_a_destination_control_update_holding_a_nan_is_not_saved_and_says_so(
    cli: Cli, tmp_path: Path
) -> None:
    scripted_connection(cli, tmp_path, "c", [{"records": 1}, {"state": {"name": "users"}}])
    destination = scripted_destination(tmp_path)
    config = json.dumps({"lines_before": [control_text("NaN")]})
    cli("destinations", "create", "d", "--connector", f"exec:{destination}", "--config", config)
    cli("connections", "create", "cd", "--source", "c", "--destination", "d",
        "--stream", "users:incremental:append", "--cursor", "users=id")  # fmt: skip

    synced = cli.json("connections", "sync", "cd")

    assert synced["job"]["status"] == "succeeded"
    log = Path(synced["log"]).read_text()
    assert warning_in(log, "destination").endswith(f"the destination sent a CONTROL {NOT_SAVED}")
    assert ROTATED not in log
    assert "lines_before" in cli.json("destinations", "show", "d")["config"]


def test_a_source_trace_error_holding_a_nan_still_fails_the_sync_with_its_message(
    cli: Cli, tmp_path: Path
) -> None:
    """Before: the trace was logged as a line and dropped; the failure only said the source exited 1."""
    steps = [{"records": 1}, text_line(trace_error_text("NaN")), {"exit": 1}]
    scripted_connection(cli, tmp_path, "c", steps)

    told = cli("connections", "sync", "c", code=1)

    assert "source config_error (not retryable): the API says: quota exceeded" in told.stdout + told.stderr
    assert failures_of_last_job(cli)[0] == "the API says: quota exceeded"


@pytest.mark.parametrize("command", ["check", "discover"])
def test_a_control_or_trace_error_holding_an_infinity_reaches_a_check_or_discover_job(
    cli: Cli, tmp_path: Path, command: str
) -> None:
    config = tmp_path / "config.json"
    lines = [control_text("[1, -Infinity]"), trace_error_text("Infinity")]
    config.write_text(json.dumps({f"{command}_steps": [*map(text_line, lines), {"exit": 1}]}))

    told = cli(command, f"exec:{scripted_source(tmp_path)}", "--config", str(config), code=1)

    assert "the API says: quota exceeded" in told.stdout + told.stderr
    assert ROTATED not in told.stdout + told.stderr
    (log,) = (tmp_path / "home" / "workspace").glob("*/0/logs.log")
    assert ROTATED not in log.read_text()
    assert (
        "the connector sent a CONTROL that is not valid JSON: -Infinity is not a JSON number"
        in log.read_text()
    )
