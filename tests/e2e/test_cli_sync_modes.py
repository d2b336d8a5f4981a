"""Sync modes as a user meets them: only what both sides support, per stream, refused in one line.

The destination is tests/connectors/scripted_destination.py with a spec that lists only overwrite
and append (as many third-party destinations do); the source discovers what each test scripts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import connector_script
from tests.e2e.test_cli_jobs import Cli

NO_DEDUP_SPEC = {
    "connectionSpecification": {"type": "object", "properties": {}},
    "supported_destination_sync_modes": ["overwrite", "append"],
}
USERS = {
    "name": "users",
    "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
    "supported_sync_modes": ["full_refresh", "incremental"],
    "source_defined_cursor": True,
    "default_cursor_field": ["id"],
    "source_defined_primary_key": [["id"]],
}
PRODUCTS = {**USERS, "name": "products"}


def executable(tmp_path: Path, name: str) -> str:
    return f"exec:{connector_script(tmp_path, name, name)}"


def setup(tmp_path: Path, streams: list[Any], read_steps: list[dict[str, Any]] | None = None) -> Cli:
    tmp_path.mkdir(exist_ok=True)
    cli = Cli(tmp_path / "home", SCRIPTED_DESTINATION_SPEC=json.dumps(NO_DEDUP_SPEC))
    source = {"discover_steps": [{"catalog": {"streams": streams}}], "steps": read_steps or []}
    cli("sources", "create", "src", "--connector", executable(tmp_path, "scripted_source"),
        "--config", json.dumps(source))  # fmt: skip
    destination = {"output": str(tmp_path / "out.jsonl"), "catalog_copy": str(tmp_path / "given.json")}
    cli("destinations", "create", "dst", "--connector", executable(tmp_path, "scripted_destination"),
        "--config", json.dumps(destination))  # fmt: skip
    return cli


def modes(document: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: f"{s['sync_mode']}:{s['destination_sync_mode']}" for s in document["streams"]}


def test_create_picks_only_modes_the_destination_supports(tmp_path: Path) -> None:
    steps = [{"records": 3, "stream": "users"}, {"state": {"name": "users"}}]
    cli = setup(tmp_path, [USERS], steps)
    created = cli("connections", "create", "c", "--source", "src", "--destination", "dst")
    assert "syncs as incremental:append, not incremental:append_dedup" in created.stderr
    assert modes(cli.json("connections", "show", "c")) == {"users": "incremental:append"}

    assert "sync succeeded" in cli("connections", "sync", "c").stdout
    given = json.loads((tmp_path / "given.json").read_text())  # what the destination was asked to do
    assert [(s["sync_mode"], s["destination_sync_mode"]) for s in given["streams"]] == [
        ("incremental", "append")
    ]


def test_a_mode_either_side_lacks_is_refused_in_one_line_and_nothing_is_stored(tmp_path: Path) -> None:
    cli = setup(tmp_path, [USERS, PRODUCTS])
    refused = cli.bad_input(
        "connections", "create", "c", "--source", "src", "--destination", "dst",
        "--stream", "users:incremental:append_dedup",
    )  # fmt: skip
    assert "stream 'users' cannot sync as incremental:append_dedup" in refused
    assert "the destination writes only append, overwrite" in refused
    assert cli.json("connections", "list") == {"connections": []}


def test_per_stream_modes_at_create_and_update(tmp_path: Path) -> None:
    cli = setup(tmp_path, [USERS, PRODUCTS, {**USERS, "name": "orders"}])
    cli("connections", "create", "c", "--source", "src", "--destination", "dst", "--streams", "orders",
        "--stream", "users:incremental:append", "--stream", "products:full_refresh_overwrite")  # fmt: skip
    created = modes(cli.json("connections", "show", "c"))
    assert created == {
        "orders": "incremental:append",
        "users": "incremental:append",
        "products": "full_refresh:overwrite",
    }

    cli("connections", "update", "c", "--stream", "users:full_refresh:append")
    assert modes(cli.json("connections", "show", "c"))["users"] == "full_refresh:append"
    refused = cli.bad_input("connections", "update", "c", "--stream", "products:incremental:append_dedup")
    assert "stream 'products' cannot sync as incremental:append_dedup" in refused
    assert "unknown stream(s) nope" in cli.bad_input(
        "connections", "update", "c", "--stream", "nope:full_refresh:append"
    )
    assert "unknown sync mode" in cli.bad_input("connections", "update", "c", "--stream", "users:upsert")
    assert modes(cli.json("connections", "show", "c")) == {**created, "users": "full_refresh:append"}

    cli("connections", "sync", "c", "--detach")  # a pending job has the catalog it was queued with
    refused = cli.bad_input("connections", "update", "c", "--stream", "users:incremental:append")
    assert "has a pending job" in refused and "before changing its streams" in refused


def test_a_source_without_keys_gets_them_from_the_user(tmp_path: Path) -> None:
    bare = {"name": "events", "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]}
    cli = setup(tmp_path, [bare])
    refused = cli.bad_input(
        "connections",
        "create",
        "c",
        "--source",
        "src",
        "--destination",
        "dst",
        "--stream",
        "events:incremental:append",
    )
    assert "incremental needs a cursor and the source defines none (give one with --cursor)" in refused
    cli("connections", "create", "c", "--source", "src", "--destination", "dst",
        "--stream", "events:incremental:append", "--cursor", "events=meta.ts")  # fmt: skip
    (events,) = cli.json("connections", "show", "c")["streams"]
    assert (events["sync_mode"], events["cursor_field"]) == ("incremental", ["meta", "ts"])


def test_a_malformed_or_duplicated_catalog_is_refused_and_nothing_stored(tmp_path: Path) -> None:
    for streams, problem in [
        ([USERS, {**USERS, "json_schema": {}}], "the source's catalog lists stream 'users' twice"),
        (
            [{**USERS, "json_schema": "nope"}],
            "the source's catalog: stream 'users' has no json_schema object",
        ),
        ([{**USERS, "supported_sync_modes": ["cdc"]}], "supported_sync_modes ['cdc']"),
    ]:
        cli = setup(tmp_path / str(len(problem)), streams)
        assert problem in cli.bad_input(
            "connections", "create", "c", "--source", "src", "--destination", "dst"
        )
        assert cli.json("connections", "list") == {"connections": []}


def test_the_ad_hoc_sync_asks_the_destination_too(tmp_path: Path) -> None:
    cli = setup(tmp_path, [USERS], [{"records": 2, "stream": "users"}, {"state": {"name": "users"}}])
    source = {
        "discover_steps": [{"catalog": {"streams": [USERS]}}],
        "steps": [{"records": 2, "stream": "users"}],
    }
    destination = {"output": str(tmp_path / "adhoc.jsonl"), "catalog_copy": str(tmp_path / "adhoc.json")}
    cli("sync", "--source", executable(tmp_path, "scripted_source"), "--source-config", json.dumps(source),
        "--destination", executable(tmp_path, "scripted_destination"),
        "--destination-config", json.dumps(destination))  # fmt: skip
    given = json.loads((tmp_path / "adhoc.json").read_text())
    assert [s["destination_sync_mode"] for s in given["streams"]] == ["append"]
