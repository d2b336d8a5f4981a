"""What a broken connector can send nested hundreds of levels deep: a STATE, a RECORD, a TRACE,
a CONTROL config update, a CATALOG, a SPEC. Each either goes through whole or fails its job in
one line, and nothing committed is lost (see docs/reliability.md, "Deep documents").

The documents are written as text: a nested dict that deep is more than this interpreter's json
module encodes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import scripted_destination, scripted_source
from tests.e2e.test_cli_jobs import Cli
from tests.e2e.test_cli_state import scripted_connection


def nested(levels: int) -> str:
    """A JSON object ``levels`` objects deep: {"a": {"a": ... {} ...}}."""
    return '{"a": ' * (levels - 1) + "{}" + "}" * (levels - 1)


DEEP = "@deep@"


def raw_line(message: dict[str, Any], deep: str = "") -> dict[str, Any]:
    """A scripted source's step that prints ``message`` with ``deep`` (JSON text) where it says
    DEEP."""
    return {"stdout_hex": json.dumps(message).replace(json.dumps(DEEP), deep).encode().hex()}


def stream_state(value: Any) -> dict[str, Any]:
    state = {"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": value}}
    return {"type": "STATE", "state": state}


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    # One attempt: a retry would fail the same way, after the backoff.
    return Cli(tmp_path / "home", SYNC_JOB_MAX_ATTEMPTS="1")


def one_line_failure(cli: Cli, *args: str) -> str:
    """The command fails (exit 1) with its reason, and no traceback anywhere."""
    result = cli(*args, code=1)
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout + result.stderr


KEPT = {"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"cursor": 1}}}


# A stream_state is level 4 of the state file `state show` prints ([{"stream": {"stream_state": ...),
# so a stream_state 197 objects deep ends at level 200, the most a state file may nest.
@pytest.mark.parametrize("levels", [198, 300, 900], ids=["over-by-one", "past-orjson", "near-decoders"])
def test_a_state_nested_deeper_than_a_state_file_may_fails_the_sync_and_keeps_the_committed_one(
    cli: Cli, tmp_path: Path, levels: int
) -> None:
    """Before: 201 to 254 levels were committed, then shown, but `state set` refused them back;
    255 to ~1,000 failed the attempt as an internal TypeError, retried to no end."""
    deep = raw_line(stream_state(DEEP), nested(levels))
    steps = [{"records": 1}, raw_line(stream_state({"cursor": 1})), {"records": 1}, deep]
    given = scripted_connection(cli, tmp_path, "c", steps)
    told = one_line_failure(cli, "connections", "sync", "c")
    assert "the source sent a STREAM STATE of stream 'users' nested more than 200 levels deep" in told
    assert "not retryable" not in told  # a protocol breach, as any other broken STATE

    assert cli.json("state", "show", "c")["state"] == [KEPT]
    shown = tmp_path / "shown.json"
    shown.write_text(cli("state", "show", "c").stdout)
    cli("state", "set", "c", str(shown))
    one_line_failure(cli, "connections", "sync", "c")
    assert json.loads(given.read_text()) == [KEPT]  # the next sync starts from it


@pytest.mark.parametrize("levels", [250, 300], ids=["under-orjson", "past-orjson"])
def test_a_destination_inventing_a_deep_state_fails_the_sync_and_keeps_the_committed_one(
    cli: Cli, tmp_path: Path, levels: int
) -> None:
    """A destination may send states of its own rather than echoes. One nested past the limit is
    not committed (`state set` could not take it back). Before: 201-254 levels were committed, and
    past that the attempt failed as an internal TypeError."""
    scripted_connection(cli, tmp_path, "c", [{"records": 1}, {"state": {"name": "users"}}])
    destination = scripted_destination(tmp_path)
    config = json.dumps({"own_state_depth": levels})
    cli("destinations", "create", "deep", "--connector", f"exec:{destination}", "--config", config)
    cli("connections", "create", "d", "--source", "c", "--destination", "deep",
        "--stream", "users:incremental:append", "--cursor", "users=id")  # fmt: skip
    cli("state", "set", "d", json.dumps([KEPT]))

    told = one_line_failure(cli, "connections", "sync", "d")

    assert "the destination sent a STATE nested more than 200 levels deep" in told
    assert cli.json("state", "show", "d")["state"] == [KEPT]


def test_a_state_as_deep_as_a_state_file_may_be_is_committed_shown_and_set_back(
    cli: Cli, tmp_path: Path
) -> None:
    deepest = raw_line(stream_state(DEEP), nested(197))  # its innermost object: level 200 of the file
    given = scripted_connection(cli, tmp_path, "c", [{"records": 1}, deepest])
    cli("connections", "sync", "c")
    shown = tmp_path / "shown.json"
    shown.write_text(cli("state", "show", "c").stdout)
    cli("state", "set", "c", str(shown))
    cli("connections", "sync", "c")
    assert json.loads(given.read_text()) == json.loads(shown.read_text())


def test_a_record_nested_600_levels_deep_reaches_the_destination_under_a_prefix(
    cli: Cli, tmp_path: Path
) -> None:
    """Before: renaming the stream re-encoded the record, which orjson refuses past 255 levels."""
    record = {"stream": "users", "emitted_at": 1, "data": {"id": 2, "deep": DEEP}}
    steps = [raw_line({"type": "RECORD", "record": record}, nested(600)), {"state": {"name": "users"}}]
    script = scripted_source(tmp_path)
    config = json.dumps({"read_steps": steps})
    cli("sources", "create", "s", "--connector", f"exec:{script}", "--config", config)
    out = tmp_path / "out"
    cli("destinations", "create", "d", "--connector", "builtin:destination-jsonl",
        "--config", json.dumps({"path": str(out)}))  # fmt: skip
    cli("connections", "create", "c", "--source", "s", "--destination", "d",
        "--stream", "users:incremental:append", "--cursor", "users=id", "--prefix", "pre_")  # fmt: skip
    cli("connections", "sync", "c")
    written = (out / "pre_users.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in written] == [{"id": 2, "deep": json.loads(nested(600))}]


def test_a_trace_and_a_log_nested_600_levels_deep_are_logged_and_the_sync_goes_on(
    cli: Cli, tmp_path: Path
) -> None:
    """Before: a TRACE of a type the worker only logs (ANALYTICS) failed the attempt."""
    analytics = {"type": "TRACE", "trace": {"type": "ANALYTICS", "emitted_at": 1, "analytics": DEEP}}
    log = {"type": "LOG", "log": {"level": "INFO", "message": "deep", "extra": DEEP}}
    steps = [raw_line(analytics, nested(600)), raw_line(log, nested(600)), {"records": 1},
             {"state": {"name": "users"}}]  # fmt: skip
    scripted_connection(cli, tmp_path, "c", steps)
    synced = cli.json("connections", "sync", "c")
    assert synced["job"]["status"] == "succeeded"
    assert "trace ANALYTICS: (nested too deeply to show)" in Path(synced["log"]).read_text()


def test_a_config_update_nested_300_levels_deep_is_ignored_with_a_warning(cli: Cli, tmp_path: Path) -> None:
    """Before: it replaced the source's config, which `sources update` then refused to edit."""
    update = {"type": "CONNECTOR_CONFIG", "emitted_at": 1, "connectorConfig": {"config": {"deep": DEEP}}}
    control = raw_line({"type": "CONTROL", "control": update}, nested(300))
    scripted_connection(cli, tmp_path, "c", [control, {"records": 1}, {"state": {"name": "users"}}])
    before = cli.json("sources", "show", "c")["config"]
    synced = cli.json("connections", "sync", "c")
    assert synced["job"]["status"] == "succeeded"
    warned = "ignored a configuration update nested more than 200 levels deep"
    assert warned in Path(synced["log"]).read_text()
    assert cli.json("sources", "show", "c")["config"] == before
    cli("sources", "update", "c", "--merge", '{"api_key": "k"}')


def schema(levels: int) -> str:
    """A JSON schema of objects ``levels`` deep (two JSON levels each)."""
    return '{"type": "object", "properties": {"a": ' * levels + '{"type": "string"}' + "}}" * levels


def a_stream(json_schema: Any) -> dict[str, Any]:
    return {"name": "users", "json_schema": json_schema, "supported_sync_modes": ["incremental"]}


def test_a_catalog_nested_deeper_than_a_catalog_may_fails_the_discover_naming_the_stream(
    cli: Cli, tmp_path: Path
) -> None:
    """Before: the connection was created, and every sync of it failed with a RecursionError."""
    catalog = raw_line({"type": "CATALOG", "catalog": {"streams": [a_stream(DEEP)]}}, schema(300))
    script = scripted_source(tmp_path)
    cli("sources", "create", "s", "--connector", f"exec:{script}", "--config",
        json.dumps({"discover_steps": [catalog]}))  # fmt: skip
    cli("destinations", "create", "d", "--connector", "builtin:destination-jsonl",
        "--config", json.dumps({"path": str(tmp_path / "out")}))  # fmt: skip
    told = one_line_failure(cli, "connections", "create", "c", "--source", "s", "--destination", "d")
    assert "discover of source 's' failed (job 1)" in told
    failure = cli.json("jobs", "show", "1")["attempts"][0]["failures"][0]["message"]
    assert failure.startswith(
        "the connector sent a CATALOG (stream 'users') nested more than 200 levels deep"
    )
    assert cli.json("connections", "list")["connections"] == []


def test_a_spec_nested_300_levels_deep_is_not_kept_and_the_source_is_saved_unchecked(tmp_path: Path) -> None:
    """Before: `sources create` died in a RecursionError traceback in the spec check."""
    spec = raw_line({"type": "SPEC", "spec": {"connectionSpecification": DEEP}}, schema(300))
    cli = Cli(tmp_path / "home", SCRIPTED_SPEC_STEPS=json.dumps([spec]))
    script = scripted_source(tmp_path)
    cli("sources", "create", "s", "--connector", f"exec:{script}", "--config", '{"api_key": "k"}')
    cli("sources", "update", "s", "--merge", '{"api_key": "k2"}')
    with sqlite3.connect(tmp_path / "home" / "ferryman.db") as db:
        assert db.execute("select spec from actors where name = 's'").fetchall() == [(None,)]


@pytest.mark.parametrize("kind", ["CONTROL", "LOG", "TRACE"])
def test_a_message_whose_body_is_not_an_object_is_skipped_during_a_check(
    cli: Cli, tmp_path: Path, kind: str
) -> None:
    """Not deep, but the same reader: before, a `control`, `log` or `trace` that is a list raised
    in the thread reading the connector, which printed a traceback and reported "check produced no
    CONNECTION_STATUS" for a check that succeeded."""
    odd = raw_line({"type": kind, kind.lower(): [1, 2]})
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"check_steps": [odd, {"connection_status": "SUCCEEDED"}]}))
    checked = cli("check", f"exec:{scripted_source(tmp_path)}", "--config", str(config))
    assert "check succeeded" in checked.stdout + checked.stderr
    assert "Traceback" not in checked.stdout + checked.stderr
