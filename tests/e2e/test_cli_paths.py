"""Paths in stored configs, as a user meets them: the directory a command runs in must not matter.

A config is stored once and used by whichever process runs the job, started anywhere; and the
``/local`` that Docker connectors see is the same host directory for connectors run locally.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from tests.e2e.test_cli_jobs import Cli


class CliIn(Cli):
    """The CLI run from a directory of the test's choosing."""

    def run_in(self, cwd: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=self.env, cwd=cwd, timeout=120
        )
        self.printed += [result.stdout, result.stderr]
        assert result.returncode == code, (
            f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return result

    def json_in(self, cwd: Path, *args: str) -> Any:
        return json.loads(self.run_in(cwd, *args, "--json").stdout)


def bench_into_jsonl(cli: CliIn, cwd: Path, path: str) -> None:
    source = json.dumps({"count": 7})
    cli.run_in(cwd, "sources", "create", "bench", "--connector", "builtin:source-bench", "--config", source)
    destination = json.dumps({"path": path})
    cli.run_in(
        cwd,
        "destinations",
        "create",
        "files",
        "--connector",
        "builtin:destination-jsonl",
        "--config",
        destination,
    )
    cli.run_in(cwd, "connections", "create", "c", "--source", "bench", "--destination", "files")


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_a_relative_path_is_stored_absolute_so_a_sync_from_elsewhere_writes_where_meant(
    tmp_path: Path,
) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    cli = CliIn(tmp_path / "home")
    source = json.dumps({"count": 7})
    cli.run_in(
        project, "sources", "create", "bench", "--connector", "builtin:source-bench", "--config", source
    )
    created = cli.run_in(
        project,
        "destinations",
        "create",
        "files",
        "--connector",
        "builtin:destination-jsonl",
        "--config",
        json.dumps({"path": "exports"}),
    )
    wanted = str(project / "exports")
    assert f"config field 'path': 'exports' is stored as '{wanted}'" in created.stderr
    assert cli.json_in(elsewhere, "destinations", "show", "files")["config"] == {"path": wanted}
    cli.run_in(project, "connections", "create", "c", "--source", "bench", "--destination", "files")

    # The sync runs from another directory, as a `ferryman worker` started elsewhere would.
    done = cli.json_in(elsewhere, "connections", "sync", "c")
    assert done["job"]["status"] == "succeeded"
    assert lines(project / "exports" / "stream_0.jsonl") == 7
    assert list(elsewhere.iterdir()) == []


def test_local_means_the_docker_local_root_for_a_connector_run_as_a_local_process(tmp_path: Path) -> None:
    unique = f"ferryman-test-{uuid.uuid4().hex[:8]}"
    cli = CliIn(tmp_path / "home")
    try:
        bench_into_jsonl(cli, tmp_path, f"/local/{unique}")
        done = cli.json_in(tmp_path, "connections", "sync", "c")
        assert done["job"]["status"] == "succeeded"
        # Where the Docker launcher mounts /local: FERRYMAN_HOME/local by default.
        assert lines(tmp_path / "home" / "local" / unique / "stream_0.jsonl") == 7
        assert not Path("/local", unique).exists()
        # The stored config still says /local, so the same destination works in Docker.
        assert cli.json_in(tmp_path, "destinations", "show", "files")["config"] == {
            "path": f"/local/{unique}"
        }
    finally:
        shutil.rmtree(Path("/local", unique), ignore_errors=True)  # the old behaviour, as root


def test_local_root_follows_ferryman_docker_local_root(tmp_path: Path) -> None:
    root, unique = tmp_path / "shared", f"ferryman-test-{uuid.uuid4().hex[:8]}"
    cli = CliIn(tmp_path / "home", FERRYMAN_DOCKER_LOCAL_ROOT=str(root))
    try:
        bench_into_jsonl(cli, tmp_path, f"/local/{unique}")
        assert cli.json_in(tmp_path, "connections", "sync", "c")["job"]["status"] == "succeeded"
        assert lines(root / unique / "stream_0.jsonl") == 7
    finally:
        shutil.rmtree(Path("/local", unique), ignore_errors=True)  # the old behaviour, as root
