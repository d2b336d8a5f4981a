"""A config checked against its connector's spec when a source or destination is created, as a
user meets it on the CLI: one line naming each field and what the spec expects, exit 2, nothing
stored, and never the value that was sent (it may be a secret)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ferryman.connectors import ResolvedConnector
from tests.conftest import FAKER_REF, scripted_source
from tests.e2e.test_cli_jobs import Cli

SECRET = "sk-NOT-valid-3f9e7a1c5b"  # fails the key's pattern: must appear nowhere
SPEC = {
    "connectionSpecification": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "required": ["start_date", "credentials"],
        "properties": {
            "start_date": {
                "type": "string",
                "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                "pattern_descriptor": "YYYY-MM-DD",
                "format": "date",
                "order": 0,
            },
            "credentials": {
                "type": "object",
                "order": 1,
                "group": "auth",
                "oneOf": [
                    {
                        "title": "API key",
                        "required": ["auth_type", "api_key"],
                        "properties": {
                            "auth_type": {"type": "string", "const": "key"},
                            "api_key": {
                                "type": "string",
                                "airbyte_secret": True,
                                "pattern": "^sk-[a-z0-9]{16}$",
                            },
                        },
                    },
                    {
                        "title": "OAuth",
                        "required": ["auth_type", "client_id", "refresh_token"],
                        "properties": {
                            "auth_type": {"type": "string", "const": "oauth"},
                            "client_id": {"type": "string"},
                            "refresh_token": {"type": "string", "airbyte_secret": True, "always_show": True},
                        },
                    },
                ],
            },
            "steps": {"type": "array", "airbyte_hidden": True},
        },
    }
}


def refused(cli: Cli, kind: str, connector: str, config: object) -> str:
    """``KIND create`` refused: exit 2, one line, no traceback; the line without ``error: ``."""
    line = cli.bad_input(f"{kind}s", "create", "x", "--connector", connector, "--config", json.dumps(config))
    assert line.startswith("error: "), line
    return line.removeprefix("error: ")


def test_builtin_connectors_refuse_a_config_their_spec_does_not_allow_and_store_nothing(
    tmp_path: Path,
) -> None:
    cli = Cli(tmp_path / "home")
    bad = {"count": "many", "streams": "three", "api_key": {"token": SECRET}}
    assert refused(cli, "source", "builtin:source-bench", bad) == (
        "the configuration does not fulfill the specification of builtin:source-bench: "
        "'count' must be an integer; 'streams' matches none of its choices (an integer, an array); "
        "'api_key' must be a string"
    )
    assert refused(cli, "source", "builtin:source-bench", {"count": -1, "streams": ["a", "a"]}) == (
        "the configuration does not fulfill the specification of builtin:source-bench: "
        "'count' must be at least 0; 'streams' must not list an item twice"
    )
    assert refused(cli, "destination", "builtin:destination-duckdb", {"path": 5}).endswith(
        "builtin:destination-duckdb: 'path' must be a string"
    )
    assert cli.json("sources", "list") == {"sources": []}
    assert cli.json("destinations", "list") == {"destinations": []}
    assert all(SECRET not in text for text in cli.printed)
    assert SECRET.encode() not in (cli.home / "ferryman.db").read_bytes()

    # A config that fulfils it is stored as sent: the spec's defaults are not written into it.
    cli("sources", "create", "s", "--connector", "builtin:source-bench", "--config", '{"count": 5}')
    assert cli.json("sources", "show", "s")["config"] == {"count": 5}


def test_a_oneof_is_told_by_the_choice_picked_and_a_secret_that_fails_its_pattern_is_not_shown(
    tmp_path: Path,
) -> None:
    cli = Cli(tmp_path / "home", SCRIPTED_SPEC_STEPS=json.dumps([{"spec": SPEC}]))
    script = scripted_source(tmp_path)
    connector = f"exec:{script}"
    spec_of = f"the configuration does not fulfill the specification of {connector}: "

    picked_key = {"start_date": "2024-01-01", "credentials": {"auth_type": "key", "api_key": SECRET}}
    assert refused(cli, "source", connector, picked_key) == (
        spec_of + "'credentials.api_key' must match the pattern ^sk-[a-z0-9]{16}$"
    )
    picked_oauth = {"start_date": "yesterday", "credentials": {"auth_type": "oauth", "refresh_token": SECRET}}
    assert refused(cli, "source", connector, picked_oauth) == (
        spec_of + "'start_date' must be in the form YYYY-MM-DD; 'credentials.client_id' is required"
    )
    picked_none = {"start_date": "2024-01-01", "credentials": {"auth_type": "basic", "api_key": SECRET}}
    assert refused(cli, "source", connector, picked_none) == (
        spec_of + "'credentials' matches none of its choices (API key, OAuth): "
        "set 'credentials.auth_type' to one of 'key', 'oauth'"
    )
    assert refused(cli, "source", connector, {"steps": {}}) == (
        spec_of + "'start_date' is required; 'credentials' is required; 'steps' must be an array"
    )
    assert cli.json("sources", "list") == {"sources": []}
    assert all(SECRET not in text for text in cli.printed)
    assert SECRET.encode() not in (cli.home / "ferryman.db").read_bytes()

    # Airbyte's own keywords (airbyte_secret, order, group, always_show, airbyte_hidden) and
    # "format" do not stand in the way of a config that fulfils the schema.
    good = {"start_date": "2024-01-01", "credentials": {"auth_type": "key", "api_key": "sk-0123456789abcdef"}}
    cli("sources", "create", "s", "--connector", connector, "--config", json.dumps(good))
    assert cli.json("sources", "show", "s")["config"]["credentials"]["api_key"] == "**********"


@pytest.mark.slow
def test_faker_from_pypi_refuses_fields_of_the_wrong_type(
    tmp_path: Path, venvs_dir: Path, faker: ResolvedConnector
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "venvs").symlink_to(venvs_dir)  # the session's: faker is installed once
    cli = Cli(home)
    assert refused(cli, "source", FAKER_REF, {"count": "1000", "seed": 4.5, "always_updated": "no"}) == (
        f"the configuration does not fulfill the specification of {FAKER_REF}: "
        "'count' must be an integer; 'seed' must be an integer; 'always_updated' must be a boolean"
    )
    assert refused(cli, "source", FAKER_REF, {"count": 0, "parallelism": 0}).endswith(
        "'count' must be at least 1; 'parallelism' must be at least 1"
    )
    cli("sources", "create", "f", "--connector", FAKER_REF, "--config", '{"count": 10, "seed": 42}')
    assert cli.json("sources", "show", "f")["config"] == {"count": 10, "seed": 42}
