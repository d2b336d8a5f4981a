"""Numbers in the config and state a built-in connector reads are used as written, and a wrong
one is named as written. Before, the built-ins read their files with orjson alone, which reads an
integer past 64 bits as a float: `count: 99999999999999999999999` was refused as "got 1e+23", a
value the user never wrote, and a state of such a cursor could not be resumed from.

Real processes: the CLI as a user runs it, and the built-ins as Ferryman starts them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli_jobs import Cli

BIG = 99999999999999999999999  # past 64 bits: orjson reads it as 1e+23


def builtin(module: str, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", f"ferryman.builtin.{module}", *map(str, args)]
    return subprocess.run(command, capture_output=True, timeout=120)


def check_message(module: str, config_text: str, tmp_path: Path) -> str:
    """What ``check`` says of a config file holding ``config_text`` as written."""
    config = tmp_path / "config.json"
    config.write_text(config_text)
    done = builtin(module, "check", "--config", config)
    assert done.returncode == 0 and b"Traceback" not in done.stdout + done.stderr, done.stderr
    (status,) = [json.loads(line)["connectionStatus"] for line in done.stdout.splitlines()]
    assert status["status"] == "FAILED"
    return str(status["message"])


def test_a_sync_resumes_exactly_from_a_cursor_past_64_bits(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    state = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "stream_0"},
                                           "stream_state": {"id": BIG - 2}}}]  # fmt: skip
    given, saved, out = tmp_path / "state.json", tmp_path / "saved.json", tmp_path / "out"
    given.write_text(json.dumps(state))
    out.mkdir()

    cli(
        "sync", "--source", "builtin:source-bench", "--source-config", json.dumps({"count": BIG}),
        "--destination", "builtin:destination-jsonl", "--destination-config", json.dumps({"path": str(out)}),
        "--state", str(given), "--save-state", str(saved),
    )  # fmt: skip

    records = [json.loads(line) for line in (out / "stream_0.jsonl").read_text().splitlines()]
    assert [record["id"] for record in records] == [BIG - 1, BIG]
    assert json.loads(saved.read_text())[0]["stream"]["stream_state"] == {"id": BIG}


def test_a_refused_value_past_64_bits_is_named_as_the_user_wrote_it(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")

    told = cli("check", "builtin:source-bench", "--config", json.dumps({"count": -BIG}), code=1)

    assert f"config field 'count' must be at least 0, got {-BIG}" in told.stdout + told.stderr
    assert "e+23" not in told.stdout + told.stderr


WRONG = {
    "bench-exponent": ("source_bench", '{"count": 1e2}', "config field 'count' must be an integer, got 1e2"),
    "bench-fraction": (
        "source_bench",
        '{"record_size": 450.50}',
        "config field 'record_size' must be an integer, got 450.50",
    ),
    "bench-past-a-double": (
        "source_bench",
        '{"state_every": 1e400}',
        "config field 'state_every' must be an integer, got 1e400",
    ),
    "postgres-port": (
        "destination_postgres",
        f'{{"host": "db", "database": "d", "username": "u", "port": {BIG}}}',
        f"config field 'port' must be at most 65535, got {BIG}",
    ),
    "duckdb-timeout": (
        "destination_duckdb",
        f'{{"path": "x.duckdb", "lock_timeout_seconds": -{BIG}}}',
        f"config field 'lock_timeout_seconds' must be at least 0, got -{BIG}",
    ),
    "jsonl-timeout": (
        "destination_jsonl",
        '{"path": "out", "lock_timeout_seconds": 2.5E1}',
        "config field 'lock_timeout_seconds' must be an integer, got 2.5E1",
    ),
    # Read exactly, a huge value was taken: streams died with a MemoryError and a traceback
    # (a name made for each), a record_size when the sync began, a lock timeout overflowed.
    "bench-streams-past-any-catalog": (
        "source_bench",
        f'{{"streams": {BIG}}}',
        f"config field 'streams' must be at most 100000, got {BIG}",
    ),
    "bench-record-past-any-line": (
        "source_bench",
        '{"record_size": 1000000000000}',
        "config field 'record_size' must be at most 67108864, got 1000000000000",
    ),
    "duckdb-timeout-past-a-day": (
        "destination_duckdb",
        '{"path": "x.duckdb", "lock_timeout_seconds": 86401}',
        "config field 'lock_timeout_seconds' must be at most 86400, got 86401",
    ),
    "jsonl-timeout-past-a-day": (
        "destination_jsonl",
        f'{{"path": "out", "lock_timeout_seconds": {BIG}}}',
        f"config field 'lock_timeout_seconds' must be at most 86400, got {BIG}",
    ),
}


@pytest.mark.parametrize("module, config, message", WRONG.values(), ids=WRONG.keys())
def test_each_builtin_names_a_wrong_number_as_its_config_file_has_it(
    tmp_path: Path, module: str, config: str, message: str
) -> None:
    assert check_message(module, config, tmp_path) == message


def test_invalid_json_in_a_config_still_says_where(tmp_path: Path) -> None:
    """Not a change: msgspec's reason would name the byte only; orjson's says line and column."""
    message = check_message("source_bench", '{"count": NaN}', tmp_path)
    assert message.endswith(
        "not valid JSON: unexpected character, expected a JSON value: line 1 column 11 (char 10)"
    )


def test_a_huge_stream_count_or_record_size_is_refused_by_the_spec_in_one_line(tmp_path: Path) -> None:
    """The spec says the maxima the built-in keeps, so a source is refused when it is made, not
    at its first sync; and a sync run at once (no source made) is refused by the built-in."""
    cli = Cli(tmp_path / "home")
    for field, value, most in (("streams", BIG, 100_000), ("record_size", 2**40, 64 << 20)):
        config = json.dumps({field: value})
        told = cli.bad_input(
            "sources", "create", field, "--connector", "builtin:source-bench", "--config", config
        )
        assert told.endswith(f"'{field}' must be at most {most}"), told
    done = cli("discover", "builtin:source-bench", "--config", json.dumps({"streams": BIG}), code=1)
    assert done.stderr.strip() == (
        f"source config_error (not retryable): config field 'streams' must be at most 100000, got {BIG}"
    )
