"""docker: connectors from the command line: one clear line when Docker cannot help, limits kept.

Needs a Docker engine and the test images (tests/images/build.py) for most tests; the one about a
missing engine points DOCKER_HOST at a socket that does not exist, so it runs anywhere.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from ferryman.connectors.docker import image_id, parse_image, run_docker
from tests import docker_support
from tests.conftest import watchdogs_of
from tests.e2e.test_cli_jobs import wait_for
from tests.images.build import image


def ferryman(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferryman", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "FERRYMAN_HOME": str(home), **env},
        timeout=120,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_no_docker_engine_is_one_line_saying_how_to_start_one(tmp_path: Path) -> None:
    if docker_support.shutil.which("docker") is None:
        docker_support.skip_or_fail("no docker command")
    result = ferryman(
        tmp_path, "spec", "docker:airbyte/source-faker:6.2.21", DOCKER_HOST="unix:///nowhere.sock"
    )

    line = one_line(result)
    assert result.returncode == 1
    assert "no Docker engine answers" in line and "dockerd" in line


def test_an_image_that_cannot_be_pulled_is_one_line_with_image_tag_and_reason(tmp_path: Path) -> None:
    docker_support.require_docker()
    result = ferryman(tmp_path, "spec", "docker:ferryman-test/no-such-connector:0.0.1")

    line = one_line(result)
    assert result.returncode != 0
    assert "could not pull image ferryman-test/no-such-connector (tag 0.0.1): " in line
    assert len(line.split("): ", 1)[1]) > 10  # the engine's own reason follows


def test_spec_of_a_connector_image(tmp_path: Path) -> None:
    docker_support.require_docker("source-faker")
    result = ferryman(tmp_path, "spec", f"docker:{image('source-faker')}", "--json")

    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)
    assert "count" in spec["spec"]["connectionSpecification"]["properties"]


def test_container_limits_are_kept_with_the_source_and_refused_for_local_connectors(tmp_path: Path) -> None:
    docker_support.require_docker("scripted-source")
    source = f"docker:{image('scripted-source')}"
    created = ferryman(
        tmp_path,
        "sources",
        "create",
        "limited",
        "--connector",
        source,
        "--config",
        "{}",
        "--memory-limit",
        "512Mi",
        "--cpu-limit",
        "0.5",
        "--json",
    )
    refused = ferryman(
        tmp_path, "sources", "create", "local", "--connector", "builtin:source-bench", "--config", "{}",
        "--memory-limit", "1g",
    )  # fmt: skip
    bad = ferryman(
        tmp_path, "sources", "create", "bad", "--connector", source, "--config", "{}", "--cpu-limit", "lots"
    )

    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["resources"] == {"memory_limit": "512m", "cpu_limit": "0.5"}
    assert refused.returncode == 2 and "docker: connectors only" in one_line(refused)
    assert bad.returncode == 2 and "--cpu-limit" in one_line(bad)


def test_an_absent_image_is_pulled_from_its_registry_then_used_without_it(tmp_path: Path) -> None:
    docker_support.require_docker("scripted-source")
    with docker_support.LocalRegistry(tmp_path / "registry") as registry:
        remote = parse_image(f"{registry.address}/ferryman-test/scripted-source:pulled")
        try:
            local = image("scripted-source")
            for args in (("tag", local, remote.reference), ("push", "--quiet", remote.reference)):
                done = run_docker(*args)
                assert done.returncode == 0, done.stderr
            assert run_docker("rmi", remote.reference).returncode == 0
            assert image_id(remote) is None
            pulled = ferryman(tmp_path / "home", "spec", f"docker:{remote.reference}", "--json")
            assert pulled.returncode == 0, pulled.stderr
            assert image_id(remote) is not None
            # Now without the registry (and a new home: no cached spec): the image is used as it is.
            registry.stop()
            again = ferryman(tmp_path / "home-2", "spec", f"docker:{remote.reference}", "--json")
        finally:
            run_docker("rmi", remote.reference)

    assert "connectionSpecification" in json.loads(pulled.stdout)["spec"]
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(pulled.stdout)


def test_a_sync_killed_with_sigkill_leaves_no_container_running(tmp_path: Path) -> None:
    """No other command runs after the kill: only the killed sync's watchdog can remove the
    source's container, which would otherwise hang until the next command's recovery."""
    docker_support.require_docker("scripted-source")
    home = tmp_path / "home"
    steps = [{"records": 5}, {"state": {"name": "users"}}, {"hang": True}]
    created = [
        ferryman(home, "sources", "create", "src", "--connector", f"docker:{image('scripted-source')}",
                 "--config", json.dumps({"read_steps": steps})),
        ferryman(home, "destinations", "create", "dst", "--connector", "builtin:destination-jsonl",
                 "--config", json.dumps({"path": str(tmp_path / "out")})),
        ferryman(home, "connections", "create", "conn", "-s", "src", "-d", "dst", "--full-refresh"),
    ]  # fmt: skip
    assert [c.returncode for c in created] == [0, 0, 0], [c.stderr for c in created]
    sync = subprocess.Popen(
        [sys.executable, "-m", "ferryman", "connections", "sync", "conn"],
        env={**os.environ, "FERRYMAN_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        name = wait_for(lambda: [c for c in docker_support.containers() if "-sync-" in c], "the container")[0]
        assert watchdogs_of(sync.pid)  # started with the first connector, before the container
    finally:
        sync.kill()
        sync.wait()

    wait_for(lambda: name not in docker_support.containers(), "the killed sync's container to go")


@pytest.mark.slow
def test_ctrl_c_during_an_image_pull_is_a_cancel_not_a_pull_failure(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the `docker pull` the sync started as well, which ends with no
    reason. Before, the cancelled job reported `could not pull image ...: no reason given`, a
    retryable system error, as what went wrong."""
    docker_support.require_docker("scripted-source")
    context = tmp_path / "image"
    context.mkdir()
    (context / "weight").write_bytes(os.urandom(1 << 20))  # a layer the engine has nowhere else
    (context / "Dockerfile").write_text(f"FROM {image('scripted-source')}\nCOPY weight /weight\n")
    home = tmp_path / "home"
    with docker_support.LocalRegistry(tmp_path / "registry") as registry:
        heavy = f"{registry.address}/ferryman-test/heavy-source:1"
        try:
            for args in (("build", "--quiet", "-t", heavy, str(context)), ("push", "--quiet", heavy)):
                done = run_docker(*args, timeout_s=300)
                assert done.returncode == 0, done.stderr
            steps = json.dumps({"read_steps": [{"records": 1}]})
            created = [
                ferryman(home, "sources", "create", "src", "--connector", f"docker:{heavy}",
                         "--config", steps),
                ferryman(home, "destinations", "create", "dst", "--connector", "builtin:destination-jsonl",
                         "--config", json.dumps({"path": str(tmp_path / "out")})),
                ferryman(home, "connections", "create", "conn", "-s", "src", "-d", "dst", "--full-refresh"),
            ]  # fmt: skip
            assert [c.returncode for c in created] == [0, 0, 0], [c.stderr for c in created]
            assert run_docker("rmi", heavy).returncode == 0  # the sync must pull it again
            # The registry stopped (as a slow one): the pull is still waiting when Ctrl-C comes.
            # A pull that finished first (a local registry is fast) made the test a race.
            os.kill(registry._server.pid, signal.SIGSTOP)
            sync = subprocess.Popen(
                [sys.executable, "-m", "ferryman", "connections", "sync", "conn", "--json"],
                env={**os.environ, "FERRYMAN_HOME": str(home)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,  # its own process group, as a terminal's foreground job
            )
            wait_for(lambda: pulls_of(sync.pid), "the sync's docker pull", deadline_s=60)
            os.killpg(sync.pid, signal.SIGINT)  # Ctrl-C: to the whole foreground group
            sync.communicate(timeout=60)
        finally:
            os.kill(registry._server.pid, signal.SIGCONT)
            run_docker("rmi", heavy)

    shown = json.loads(ferryman(home, "jobs", "list", "--type", "sync", "--json").stdout)["jobs"][0]
    details = json.loads(ferryman(home, "jobs", "show", str(shown["id"]), "--json").stdout)
    assert details["job"]["status"] == "cancelled"
    failures = [f for attempt in details["attempts"] for f in attempt["failures"]]
    assert [(f["type"], f["message"]) for f in failures] == [
        ("manual_cancellation", "the sync was cancelled")
    ]


def pulls_of(pid: int) -> list[psutil.Process]:
    """The `docker pull` commands among a process's descendants."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:  # a child that has just ended is a zombie, whose command line cannot be read
            if "pull" in child.cmdline():
                found.append(child)
        except psutil.Error:
            continue
    return found


def test_ctrl_c_during_a_reset_stops_its_container_and_says_the_reset_was_cancelled(tmp_path: Path) -> None:
    """A destination that stops reading and ignores SIGTERM: the cancel's grace, then SIGKILL.
    Before, the cancelled reset's failure read `the sync was cancelled`."""
    docker_support.require_docker("scripted-destination")
    home = tmp_path / "home"
    stuck = json.dumps({"stop_reading": True, "ignore_sigterm": True})
    created = [
        ferryman(home, "sources", "create", "src", "--connector", "builtin:source-bench",
                 "--config", json.dumps({"count": 10})),
        ferryman(home, "destinations", "create", "dst", "--connector",
                 f"docker:{image('scripted-destination')}", "--config", stuck),
        ferryman(home, "connections", "create", "conn", "-s", "src", "-d", "dst", "--full-refresh"),
    ]  # fmt: skip
    assert [c.returncode for c in created] == [0, 0, 0], [c.stderr for c in created]
    reset = subprocess.Popen(
        [sys.executable, "-m", "ferryman", "connections", "reset", "conn"],
        env={**os.environ, "FERRYMAN_HOME": str(home), "FERRYMAN_CANCEL_GRACE_S": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    name = wait_for(lambda: [c for c in docker_support.containers() if "-reset_connection-" in c], "it")[0]
    os.killpg(reset.pid, signal.SIGINT)
    _, stderr = reset.communicate(timeout=60)

    assert reset.returncode == 1, stderr
    assert "manual_cancellation (not retryable): the reset was cancelled" in stderr
    assert name not in docker_support.containers()
    shown = json.loads(ferryman(home, "jobs", "list", "--type", "reset_connection", "--json").stdout)["jobs"]
    assert [job["status"] for job in shown] == ["cancelled"]
