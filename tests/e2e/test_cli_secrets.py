"""Secrets as a user meets them: masked by the spec kept when the actor was created, in every
output and log, with their encoded forms; and common words left alone (docs/secrets.md).

The source is the scripted test connector behind an ``exec:`` script. Its spec touches a marker
file each time it runs, so a display command that starts the connector is caught.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ferryman.secrets import encoded_forms
from ferryman.workers.attempt_log import MAX_LINE_CHARS
from tests.conftest import scripted_source
from tests.e2e.test_cli_jobs import MASK, Cli

# Named like nothing secret: only the kept spec says it is. A quote, a backslash, a tab and
# non-ASCII, so its JSON-escaped form differs from it.
SHARD_KEY = 'zebra"7d\\1e\tnäver-printed'
REPLICA_KEYS = ["replica-one-4f1a", "replica-two-8c2b"]  # a secret-marked array
SPEC_SECRET = {"type": "string", "airbyte_secret": True}
SPEC = {
    "connectionSpecification": {
        "type": "object",
        "properties": {
            "shard_key": {"type": "string", "airbyte_secret": True},
            "replica_keys": {"type": "array", "items": {"type": "string"}, "airbyte_secret": True},
            "auth_type": {"type": "string", "enum": ["password", "key"]},
            "steps": {"type": "array"},
        },
    }
}


def every_form(secret: str) -> set[str]:
    return encoded_forms(secret) | {
        json.dumps(secret)[1:-1],
        quote(secret),
        base64.b64encode(secret.encode()).decode(),
    }


def assert_nowhere(cli: Cli, secrets: list[str]) -> None:
    """No secret, in any encoded form, in anything printed or in any attempt log."""
    texts = [*cli.printed, *(p.read_text(errors="replace") for p in cli.home.rglob("logs.log"))]
    for secret in secrets:
        for form in every_form(secret):
            for text in texts:
                assert form not in text, f"{form!r} (a form of {secret!r}) shows in:\n{text}"


def read_steps() -> list[dict[str, Any]]:
    return [
        {"log": f"connecting with shard {SHARD_KEY}"},
        {
            "stderr": json.dumps(
                {"level": "DEBUG", "msg": f"config shard={SHARD_KEY} replicas={REPLICA_KEYS}"}
            )
        },
        {"stderr": f"GET https://api.example/?key={quote(SHARD_KEY)}&r={REPLICA_KEYS[1]}"},
        {"records": 100},
        {"log": "emitted 100 records; use_auth is True"},
        {"log": "login failed: please check username, password or private key"},
        {"trace_error": {"failure_type": "config_error", "message": f"shard {SHARD_KEY} was refused"}},
        {"exit": 1},
    ]


def test_displays_never_run_the_spec_and_mask_by_the_kept_one(tmp_path: Path) -> None:
    marker = tmp_path / "spec-ran"
    cli = Cli(tmp_path / "home", SCRIPTED_SPEC_STEPS=json.dumps([{"touch": str(marker)}, {"spec": SPEC}]))
    config = {
        "shard_key": SHARD_KEY,
        "replica_keys": REPLICA_KEYS,
        "auth_type": "password",
        "use_auth": True,
        "max_tokens": 100,
        "read_steps": read_steps(),
    }
    cli(
        "sources",
        "create",
        "scripted",
        "--connector",
        f"exec:{scripted_source(tmp_path)}",
        "--config",
        json.dumps(config),
    )
    assert marker.exists(), "creating a source runs its spec, to keep it"
    cli("destinations", "create", "duck", "--connector", "builtin:destination-duckdb", "--config",
        json.dumps({"path": str(tmp_path / "x.duckdb")}))  # fmt: skip
    cli("connections", "create", "c", "--source", "scripted", "--destination", "duck")

    # From now on the connector's spec is broken: masking must not need it.
    marker.unlink()
    cli.env["SCRIPTED_SPEC_STEPS"] = json.dumps([{"touch": str(marker)}, {"exit": 1}])
    shown = cli.json("sources", "show", "scripted")["config"]
    assert (shown["shard_key"], shown["replica_keys"]) == (MASK, MASK)
    assert (shown["auth_type"], shown["use_auth"], shown["max_tokens"]) == ("password", True, 100)
    cli("sources", "show", "scripted")
    cli.json("sources", "list")
    cli("sources", "list")
    cli("connections", "show", "c")

    sync = cli.json("connections", "sync", "c", code=1)
    failures = sync["attempts"][-1]["failures"]
    assert f"shard {MASK} was refused" in [f["message"] for f in failures]
    job_id = str(sync["job"]["id"])
    cli("jobs", "show", job_id)
    cli.json("jobs", "show", job_id)
    cli("jobs", "list")
    log = cli("jobs", "logs", job_id, "--tail", "1000").stdout
    cli.json("jobs", "logs", job_id)
    assert not marker.exists(), "a display command (or the sync) ran the connector's spec"
    assert not list((cli.home / "workspace").glob("spec-*")), "a spec run left its folder behind"

    assert f"connecting with shard {MASK}" in log
    # Common words and numbers of non-secret fields are left alone.
    assert "emitted 100 records; use_auth is True" in log
    assert "please check username, password or private key" in log
    assert_nowhere(cli, [SHARD_KEY, *REPLICA_KEYS])


def test_an_actor_without_a_kept_spec_gets_it_from_its_first_job(tmp_path: Path) -> None:
    """An actor created before specs were kept (its spec NULL) is masked by names until a job
    of its runs the connector anyway; that job keeps the spec, which then masks without it."""
    cli = Cli(tmp_path / "home", SCRIPTED_SPEC_STEPS=json.dumps([{"spec": SPEC}]))
    config = {"shard_key": SHARD_KEY, "replica_keys": REPLICA_KEYS}
    cli(
        "sources",
        "create",
        "old",
        "--connector",
        f"exec:{scripted_source(tmp_path)}",
        "--config",
        json.dumps(config),
    )
    with sqlite3.connect(cli.home / "ferryman.db") as db:
        db.execute("UPDATE actors SET spec = NULL")
    cli("destinations", "create", "duck", "--connector", "builtin:destination-duckdb", "--config",
        json.dumps({"path": str(tmp_path / "x.duckdb")}))  # fmt: skip
    cli("connections", "create", "c", "--source", "old", "--destination", "duck")  # a discover job

    cli.env["SCRIPTED_SPEC_STEPS"] = json.dumps([{"exit": 1}])
    shown = cli.json("sources", "show", "old")["config"]
    assert (shown["shard_key"], shown["replica_keys"]) == (MASK, MASK)
    assert_nowhere(cli, [SHARD_KEY, *REPLICA_KEYS])


# A secret the connector hands back in a CONTROL update: never in the config the source was given.
ROTATED = "rotated-7c4e-refresh-token"


def raw_stdout(message: dict[str, Any] | str) -> dict[str, Any]:
    """A step that writes the line as hex in the config (so the config never holds ``ROTATED``)."""
    line = message if isinstance(message, str) else json.dumps(message)
    return {"stdout_hex": line.encode().hex()}


def test_a_secret_the_connector_rotates_is_masked_from_its_update_on(tmp_path: Path) -> None:
    """An OAuth source that refreshes its token sends the new config (CONTROL) and may then log
    the new token: masked like the old one, in the log, the failures and everything printed."""
    spec = {"connectionSpecification": {"type": "object", "properties": {"shard_key": SPEC_SECRET}}}
    cli = Cli(tmp_path / "home", SCRIPTED_SPEC_STEPS=json.dumps([{"spec": spec}]))
    control = {
        "type": "CONNECTOR_CONFIG",
        "emitted_at": 1,
        "connectorConfig": {"config": {"shard_key": ROTATED}},
    }
    error = {"failure_type": "config_error", "message": f"{ROTATED} was refused"}
    config = {
        "shard_key": SHARD_KEY,
        "read_steps": [
            raw_stdout({"type": "CONTROL", "control": control}),
            raw_stdout({"type": "LOG", "log": {"level": "INFO", "message": f"refreshed: now {ROTATED}"}}),
            raw_stdout(f"plain stdout: {json.dumps({'shard_key': ROTATED})}"),
            raw_stdout({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": 2, "error": error}}),
            {"exit": 1},
        ],
    }
    script = f"exec:{scripted_source(tmp_path)}"
    cli("sources", "create", "oauth", "--connector", script, "--config", json.dumps(config))
    cli("destinations", "create", "duck", "--connector", "builtin:destination-duckdb", "--config",
        json.dumps({"path": str(tmp_path / "x.duckdb")}))  # fmt: skip
    cli("connections", "create", "c", "--source", "oauth", "--destination", "duck")

    sync = cli.json("connections", "sync", "c", code=1)
    assert f"{MASK} was refused" in [f["message"] for f in sync["attempts"][-1]["failures"]]
    job_id = str(sync["job"]["id"])
    cli("jobs", "show", job_id)
    log = cli("jobs", "logs", job_id, "--tail", "1000").stdout
    assert f"refreshed: now {MASK}" in log
    assert cli.json("sources", "show", "oauth")["config"] == {"shard_key": MASK}  # the update was kept

    # The same during a discover (a check or discover job runs the connector the same way).
    discover_error = {"failure_type": "config_error", "message": f"discover saw {ROTATED}"}
    discover_steps = [
        raw_stdout({"type": "CONTROL", "control": control}),
        raw_stdout({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": 2, "error": discover_error}}),
        {"exit": 1},
    ]
    rotating = {"shard_key": SHARD_KEY, "discover_steps": discover_steps}
    cli("sources", "create", "rotating", "--connector", script, "--config", json.dumps(rotating))
    cli("connections", "create", "c2", "--source", "rotating", "--destination", "duck", code=1)
    discover = max(cli.json("jobs", "list")["jobs"], key=lambda job: job["id"])
    shown = cli.json("jobs", "show", str(discover["id"]))
    assert f"discover saw {MASK}" in [f["message"] for f in shown["attempts"][-1]["failures"]]
    cli("jobs", "logs", str(discover["id"]))
    assert_nowhere(cli, [SHARD_KEY, ROTATED])


def test_a_secret_where_a_long_line_is_cut_does_not_show_its_start(tmp_path: Path) -> None:
    """Lines longer than the log keeps (64 KiB), and stderr lines quoted in a failure (their
    first 2000 bytes), are cut: a secret the cut runs through is masked whole, not cut in two."""
    spec = {"connectionSpecification": {"type": "object", "properties": {"shard_key": SPEC_SECRET}}}
    cli = Cli(tmp_path / "home", SCRIPTED_SPEC_STEPS=json.dumps([{"spec": spec}]), SYNC_JOB_MAX_ATTEMPTS="1")
    secret = "cut-here-0123456789abcdef"
    config = {
        "shard_key": secret,
        "read_steps": [
            {"stderr": "x" * (MAX_LINE_CHARS - 10) + secret + " and more"},
            {"stderr": "y" * (2000 - 12) + secret + " and more"},
            {"exit": 1},
        ],
    }
    script = f"exec:{scripted_source(tmp_path)}"
    cli("sources", "create", "s", "--connector", script, "--config", json.dumps(config))
    cli("destinations", "create", "duck", "--connector", "builtin:destination-duckdb", "--config",
        json.dumps({"path": str(tmp_path / "x.duckdb")}))  # fmt: skip
    cli("connections", "create", "c", "--source", "s", "--destination", "duck")
    sync = cli.json("connections", "sync", "c", code=1)
    (failure,) = sync["attempts"][-1]["failures"]
    assert "y" * 100 + MASK in failure["message"]
    log = cli("jobs", "logs", str(sync["job"]["id"]), "--tail", "1000").stdout
    assert "x" * 100 + MASK + "... (" in log
    # The secret's start (its first 10 characters: as much as the log could keep) shows nowhere.
    assert_nowhere(cli, [secret, secret[:10]])
