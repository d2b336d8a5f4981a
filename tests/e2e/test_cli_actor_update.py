"""``ferryman sources update`` and ``destinations update``: a CLI user changes a saved config (a
rotated password, a new path) without deleting what connections use, the config checked against
the connector's spec, its secrets kept when sent back masked and never printed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.e2e.test_cli_jobs import Cli, committed

OLD = "sk-old-key-5f0c9e"
NEW = "sk-new-key-a71d2b"


def stored_config(cli: Cli, name: str) -> Any:
    with sqlite3.connect(cli.home / "ferryman.db") as db:
        (config,) = db.execute("SELECT config FROM actors WHERE name = ?", (name,)).fetchone()
    return json.loads(config)


def test_a_saved_source_is_updated_by_merge_or_replace_and_its_secret_is_kept_and_never_shown(
    tmp_path: Path,
) -> None:
    cli = Cli(tmp_path / "home")
    cli(
        "sources",
        "create",
        "s",
        "--connector",
        "builtin:source-bench",
        "--config",
        json.dumps({"count": 5, "api_key": OLD}),
    )
    cli("destinations", "create", "d", "--connector", "builtin:destination-devnull")
    cli("connections", "create", "c", "--source", "s", "--destination", "d")

    # One field changed; the others, the secret among them, kept.
    shown = cli.json("sources", "update", "s", "--merge", '{"count": 7}')
    assert shown["config"] == {"count": 7, "api_key": "**********"}
    assert stored_config(cli, "s") == {"count": 7, "api_key": OLD}
    # The secret rotated alone.
    cli("sources", "update", "s", "--merge", json.dumps({"api_key": NEW}))
    assert stored_config(cli, "s") == {"count": 7, "api_key": NEW}
    # The whole config replaced, as `show --json` printed it: the masked secret keeps its value.
    cli("sources", "update", "s", "--config", '{"count": 9, "api_key": "**********"}', "--name", "t")
    assert stored_config(cli, "t") == {"count": 9, "api_key": NEW}
    assert cli.json("connections", "show", "c")["source"] == "t"  # the connection follows
    sync = cli.json("connections", "sync", "c")
    assert sync["job"]["status"] == "succeeded" and committed(sync) == {"stream_0": 9}  # the new count

    # A config the spec refuses, and nonsense: one line each, nothing changed.
    assert cli.bad_input("sources", "update", "t", "--merge", '{"count": "many"}') == (
        "error: the configuration does not fulfill the specification of builtin:source-bench: "
        "'count' must be an integer"
    )
    assert (
        cli.bad_input("sources", "update", "t")
        == "error: nothing to change: give --config, --merge or --name"
    )
    assert cli.bad_input("sources", "update", "t", "--config", "{}", "--merge", "{}") == (
        "error: give --config (the whole config) or --merge (some fields), not both"
    )
    assert (
        cli.bad_input("sources", "update", "nosuch", "--merge", "{}")
        == "error: no source named or numbered 'nosuch'"
    )
    assert stored_config(cli, "t") == {"count": 9, "api_key": NEW}
    assert all(OLD not in text and NEW not in text for text in cli.printed)


def test_a_destination_is_pointed_at_a_new_file(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    first, second = tmp_path / "first.duckdb", tmp_path / "second.duckdb"
    cli(
        "destinations",
        "create",
        "d",
        "--connector",
        "builtin:destination-duckdb",
        "--config",
        json.dumps({"path": str(first)}),
    )
    shown = cli.json("destinations", "update", "d", "--config", json.dumps({"path": str(second)}))
    assert shown["config"] == {"path": str(second)}
    assert cli.bad_input("destinations", "update", "d", "--merge", '{"path": 5}').endswith(
        "'path' must be a string"
    )
    assert cli.json("destinations", "show", "d")["config"] == {"path": str(second)}


def test_a_config_or_state_nested_900_levels_deep_is_one_line(tmp_path: Path) -> None:
    # Valid JSON, but what walks a config or state (making its paths absolute, masking it)
    # recursed past Python's stack: a RecursionError traceback.
    cli = Cli(tmp_path / "home")
    config: dict[str, Any] = {"count": 5}
    inner = config
    for _ in range(900):
        inner["n"] = {}
        inner = inner["n"]
    deep = tmp_path / "deep.json"
    deep.write_text(json.dumps(config))
    too_deep = "nests more than 200 levels deep; no connector's config or state does"
    bench = ["--connector", "builtin:source-bench"]
    assert (
        cli.bad_input("sources", "create", "s", *bench, "--config", str(deep))
        == f"error: --config {too_deep}"
    )
    cli("sources", "create", "s", *bench, "--config", '{"count": 5}')
    assert cli.bad_input("sources", "update", "s", "--merge", str(deep)) == f"error: --merge {too_deep}"
    assert stored_config(cli, "s") == {"count": 5}
    # The ad-hoc sync's config and a state set by hand went the same way.
    adhoc = cli.bad_input("sync", "--source", "builtin:source-bench", "--source-config", str(deep))
    assert adhoc == f"error: --source-config {too_deep}"
    cli("destinations", "create", "d", "--connector", "builtin:destination-devnull")
    cli("connections", "create", "c", "--source", "s", "--destination", "d")
    state = [
        {"type": "STREAM", "stream": {"stream_descriptor": {"name": "stream_0"}, "stream_state": config}}
    ]
    deep_state = tmp_path / "state.json"
    deep_state.write_text(json.dumps(state))
    assert cli.bad_input("state", "set", "c", str(deep_state)) == f"error: STATE {too_deep}"
