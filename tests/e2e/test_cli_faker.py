"""The CLI as a user drives it, with airbyte-source-faker installed by ferryman from PyPI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from ferryman.connectors import ResolvedConnector
from tests.conftest import FAKER_REF

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def user_home(tmp_path_factory: pytest.TempPathFactory, venvs_dir: Path, faker: ResolvedConnector) -> Path:
    """A FERRYMAN_HOME whose venvs are the session's, so faker is installed once per session."""
    home = tmp_path_factory.mktemp("user-home")
    (home / "venvs").symlink_to(venvs_dir)
    return home


def ferryman(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FERRYMAN_HOME": str(home), "FERRYMAN_PROGRESS_INTERVAL_S": "0"}
    return subprocess.run(
        [sys.executable, "-m", "ferryman", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=240,
    )


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stdout, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_spec(user_home: Path) -> None:
    result = ferryman(user_home, "spec", FAKER_REF, "--json")
    assert result.returncode == 0, result.stderr
    spec = as_json(result)["spec"]
    assert "count" in spec["connectionSpecification"]["properties"]


def test_installed_connectors_are_listed(user_home: Path) -> None:
    result = ferryman(user_home, "connectors", "--json")
    assert result.returncode == 0, result.stderr
    references = {c["reference"] for c in as_json(result)["connectors"]}
    assert {FAKER_REF, "builtin:destination-duckdb", "builtin:source-bench"} <= references


def test_check_good_and_bad_config(user_home: Path) -> None:
    good = ferryman(user_home, "check", FAKER_REF, "--config", '{"count": 10}', "--json")
    assert good.returncode == 0, good.stderr
    assert as_json(good)["check"]["status"] == "succeeded"

    bad = ferryman(user_home, "check", FAKER_REF, "--config", '{"count": "many"}', "--json")
    assert bad.returncode == 1
    check = as_json(bad)["check"]
    assert check["status"] == "failed"
    assert "many" in check["message"]


def test_discover(user_home: Path) -> None:
    result = ferryman(user_home, "discover", FAKER_REF, "--config", '{"count": 10}', "--json")
    assert result.returncode == 0, result.stderr
    names = {s["name"] for s in as_json(result)["catalog"]["streams"]}
    assert names == {"users", "products", "purchases"}


def _table_counts(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as db:
        tables = [row[0] for row in db.execute("select table_name from duckdb_tables()").fetchall()]
        return {t: db.execute(f'select count(*) from "{t}"').fetchall()[0][0] for t in tables}


def test_sync_into_duckdb_then_an_incremental_sync_from_the_committed_state(
    user_home: Path, tmp_path: Path
) -> None:
    database, state = tmp_path / "faker.duckdb", tmp_path / "state.json"
    destination = [
        "--destination",
        "builtin:destination-duckdb",
        "--destination-config",
        f'{{"path": "{database}"}}',
    ]
    source = ["--source", FAKER_REF, "--source-config"]

    first = ferryman(
        user_home,
        "sync",
        *source,
        '{"count": 200, "seed": 7, "always_updated": false}',
        *destination,
        "--save-state",
        str(state),
        "--json",
    )
    assert first.returncode == 0, first.stderr
    summary = as_json(first)
    assert summary["status"] == "completed"
    per_stream = {s["name"]: s["records_committed"] for s in summary["streams"]}
    assert per_stream["users"] == 200
    assert _table_counts(database) == per_stream
    assert summary["records_committed"] == summary["records_emitted"] == sum(per_stream.values())
    saved = json.loads(state.read_text())
    assert {s["stream"]["stream_descriptor"]["name"] for s in saved} == {"users", "products", "purchases"}
    assert saved == summary["state"]

    # With always_updated off, faker emits a stream only when its state has no cursor yet: a
    # second sync that starts from the committed state has nothing new to send.
    second = ferryman(
        user_home,
        "sync",
        *source,
        '{"count": 200, "seed": 7, "always_updated": false}',
        *destination,
        "--state",
        str(state),
        "--save-state",
        str(state),
        "--json",
        "--streams",
        "users",
    )
    assert second.returncode == 0, second.stderr
    again = as_json(second)
    assert again["status"] == "completed"
    assert [(s["name"], s["records_emitted"]) for s in again["streams"]] == [("users", 0)]
    assert _table_counts(database)["users"] == 200
    assert json.loads(state.read_text()) == saved


def test_bad_input_is_one_line_and_exit_code_2(user_home: Path) -> None:
    result = ferryman(user_home, "sync", "--source", FAKER_REF, "--source-config", "{oops")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--source-config" in lines[0] and "Traceback" not in result.stderr

    result = ferryman(
        user_home, "sync", "--source", FAKER_REF, "--source-config", '{"count": 5}', "--streams", "nope"
    )
    assert result.returncode == 2
    assert "unknown stream(s) nope" in result.stderr and "Traceback" not in result.stderr
