"""What Ferryman leaves on disk, and what it says when a connector fails.

Every file it writes under FERRYMAN_HOME is its owner's alone (the store holds configs, the logs
what connectors print), whatever the umask; failure text is stored with the attempt's secrets
masked; and a failure is shown by its most specific message, not the CDK's generic one.
"""

from __future__ import annotations

import json
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Any

from tests.conftest import scripted_source
from tests.e2e.test_cli_jobs import MASK, Cli

API_KEY = "k3y-5e1f-never-stored"  # marked airbyte_secret by the source's spec below
CDK_GENERIC = "Something went wrong in the connector. See the logs for more details."
SPECIFIC = "No such file or directory: '/data/gone.jsonl'"


def permissive(tmp_path: Path, **env: str) -> Cli:
    """A CLI whose processes run under umask 0o002 (files 0664, folders 0775 by default)."""
    cli = Cli(tmp_path / "home", **env)
    launcher = tmp_path / "umask-002"
    launcher.write_text(f'#!/bin/sh\numask 002\nexec "{sys.executable}" "$@"\n')
    launcher.chmod(0o755)
    cli.argv = lambda *args: [str(launcher), "-m", "ferryman", *args]  # type: ignore[method-assign]
    return cli


def readable_by_others(home: Path) -> list[str]:
    """Files and folders under ``home`` (venvs aside) that anyone but the owner may open."""
    found = []
    for path in [home, *home.rglob("*")]:
        if "venvs" in path.relative_to(home).parts:
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        wanted = 0o700 if path.is_dir() else 0o600
        if mode & 0o077 or (path.is_dir() and mode != wanted):
            found.append(f"{oct(mode)} {path.relative_to(home)}")
    return found


def bench_to_devnull(cli: Cli) -> None:
    cli("sources", "create", "b", "--connector", "builtin:source-bench", "--config", '{"count": 50}')
    cli("destinations", "create", "d", "--connector", "builtin:destination-devnull", "--config", "{}")
    cli("connections", "create", "c", "--source", "b", "--destination", "d")


def test_nothing_under_the_home_is_readable_by_others_after_a_sync(tmp_path: Path) -> None:
    cli = permissive(tmp_path)
    bench_to_devnull(cli)
    job = cli.json("connections", "sync", "c")
    assert job["job"]["status"] == "succeeded"
    home = cli.home
    assert (home / "ferryman.db").is_file() and list((home / "workspace").rglob("logs.log"))
    assert readable_by_others(home) == []


def test_a_home_left_open_by_an_older_version_is_closed_when_opened(tmp_path: Path) -> None:
    cli = permissive(tmp_path)
    bench_to_devnull(cli)
    home = cli.home
    home.chmod(0o755)
    (home / "ferryman.db").chmod(0o644)
    cli("connections", "sync", "c")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "ferryman.db").stat().st_mode) == 0o600


def failing_scripted_connection(cli: Cli, tmp_path: Path, error: dict[str, Any]) -> None:
    """An exec: source whose spec marks api_key secret and whose read emits ``error`` as a TRACE."""
    script = scripted_source(tmp_path)
    steps = [{"records": 3}, {"trace_error": {"failure_type": "config_error", **error}}, {"exit": 1}]
    config = {"api_key": API_KEY, "read_steps": steps}
    cli("sources", "create", "s", "--connector", f"exec:{script}", "--config", json.dumps(config))
    cli("destinations", "create", "d", "--connector", "builtin:destination-devnull", "--config", "{}")
    cli("connections", "create", "c", "--source", "s", "--destination", "d")


SECRET_SPEC = {
    "connectionSpecification": {
        "type": "object",
        "properties": {
            "api_key": {"type": "string", "airbyte_secret": True},
            "read_steps": {"type": "array"},
        },
    }
}


def test_failure_text_is_stored_with_the_secrets_masked(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home", SCRIPTED_SPEC_STEPS=json.dumps([{"spec": SECRET_SPEC}]))
    failing_scripted_connection(
        cli,
        tmp_path,
        {
            "message": f"the key {API_KEY} was refused",
            "internal_message": f"HTTP 401 for key={API_KEY}",
            "stack_trace": f'Traceback:\n  File "x.py", line 1\nAuthError: {API_KEY}\n',
        },
    )
    cli("connections", "sync", "c", code=1)
    with sqlite3.connect(cli.home / "ferryman.db") as db:
        stored = db.execute("select failure_summary, output from attempts").fetchall()
    text = json.dumps(stored)
    assert "was refused" in text and "HTTP 401" in text and "AuthError" in text  # the text is kept
    assert API_KEY not in text and MASK in text
    for log in (cli.home / "workspace").rglob("logs.log"):
        assert API_KEY not in log.read_text()


def test_the_specific_message_is_shown_when_the_connector_says_only_something_went_wrong(
    tmp_path: Path,
) -> None:
    cli = Cli(tmp_path / "home")
    failing_scripted_connection(
        cli, tmp_path, {"message": CDK_GENERIC, "internal_message": f"{SPECIFIC}\nmore"}
    )
    summary = cli("connections", "sync", "c", code=1)
    assert SPECIFIC in summary.stderr + summary.stdout
    job_id = str(cli.json("jobs", "list")["jobs"][0]["id"])
    shown = cli("jobs", "show", job_id).stdout
    assert SPECIFIC in shown and "more" not in shown.split(SPECIFIC)[1].splitlines()[0]


def test_the_internal_message_is_masked_where_it_is_shown(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home", SCRIPTED_SPEC_STEPS=json.dumps([{"spec": SECRET_SPEC}]))
    failing_scripted_connection(
        cli, tmp_path, {"message": CDK_GENERIC, "internal_message": f"bad key {API_KEY}"}
    )
    summary = cli("connections", "sync", "c", code=1)
    job_id = str(cli.json("jobs", "list")["jobs"][0]["id"])
    shown = cli("jobs", "show", job_id).stdout
    for text in (summary.stderr, shown):
        assert f"bad key {MASK}" in text and API_KEY not in text


def test_an_ad_hoc_sync_whose_discover_fails_names_the_specific_cause_masked(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home", SCRIPTED_SPEC_STEPS=json.dumps([{"spec": SECRET_SPEC}]))
    script = scripted_source(tmp_path)
    error = {
        "failure_type": "system_error",
        "message": CDK_GENERIC,
        "internal_message": f"{SPECIFIC} {API_KEY}",
    }
    config = {"api_key": API_KEY, "discover_steps": [{"trace_error": error}, {"exit": 1}]}
    failed = cli("sync", "--source", f"exec:{script}", "--source-config", json.dumps(config), code=1)
    assert f"{SPECIFIC} {MASK}" in failed.stderr and API_KEY not in failed.stderr + failed.stdout
