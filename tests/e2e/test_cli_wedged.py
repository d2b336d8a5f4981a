"""Nothing wedged, nothing orphaned: a CLI killed, interrupted or out of disk as a user meets it.

Each test drives ``python -m ferryman`` in subprocesses against its own home, with the scripted
test connectors, and checks what the user would see next: the connection usable again, no
connector process left, no config file (with its secrets) left in the workspace.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import connector_script, watchdogs_of
from tests.e2e.test_cli_jobs import Cli, wait_for


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def configs_left(home: Path) -> list[Path]:
    return sorted((home / "workspace").rglob("*_config.json"))


def wrapper(tmp_path: Path, name: str) -> str:
    """An exec: reference to a test connector, run with this interpreter."""
    return f"exec:{connector_script(tmp_path, name, name)}"


def scripted_connection(cli: Cli, tmp_path: Path, steps: list[dict[str, Any]], output: Path) -> None:
    """A scripted source running ``steps`` on read, a scripted destination writing to ``output``."""
    source = {"read_steps": steps, "api_key": "k-never-printed"}
    cli("sources", "create", "src", "--connector", wrapper(tmp_path, "scripted_source"), "--config",
        json.dumps(source))  # fmt: skip
    cli("destinations", "create", "dst", "--connector", wrapper(tmp_path, "scripted_destination"),
        "--config", json.dumps({"output": str(output)}))  # fmt: skip
    cli("connections", "create", "conn", "--source", "src", "--destination", "dst", "--full-refresh")


def paused_connection(cli: Cli, tmp_path: Path, then: list[dict[str, Any]]) -> tuple[Path, Path]:
    """A scripted connection whose source sends 5 records and a state, touches ``started`` (its
    pid inside), waits for ``release``, then runs ``then``; returns (started, release)."""
    started, release = tmp_path / "started", tmp_path / "release"
    steps = [
        {"records": 5},
        {"state": {"name": "users"}},
        {"touch": str(started)},
        {"wait_for_file": str(release), "timeout": 600},
        *then,
    ]
    scripted_connection(cli, tmp_path, steps, tmp_path / "out.jsonl")
    return started, release


def test_a_foreground_sync_killed_with_sigkill_does_not_wedge_its_connection(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    started, release = paused_connection(cli, tmp_path, [{"records": 5}])
    first = cli.start("connections", "sync", "conn")
    wait_for(started.exists, "the source to start")
    source_pid = int(started.read_text())
    first.kill()
    cli.finish(first)
    started.unlink()
    release.touch()  # the next sync's source runs to its end

    again = cli("connections", "sync", "conn", "--json")
    assert json.loads(again.stdout)["job"]["status"] == "succeeded"
    assert "was left running by a process that is gone" in again.stderr
    assert gone(source_pid), "the killed sync's source still runs"
    jobs = cli.json("jobs", "list", "--type", "sync")["jobs"]
    assert [j["status"] for j in jobs] == ["succeeded", "failed"]
    failures = cli.json("jobs", "show", str(jobs[1]["id"]))["attempts"][-1]["failures"]
    assert "is gone" in failures[0]["message"]
    assert configs_left(cli.home) == []


def test_a_foreground_sync_killed_while_it_waits_to_retry_does_not_wedge_it(tmp_path: Path) -> None:
    # A long backoff: the command is still waiting for its second attempt when it is killed.
    cli = Cli(tmp_path / "home", FERRYMAN_RETRY_BACKOFF_MIN_S="600")
    started, release = paused_connection(cli, tmp_path, [{"records": 5}])
    first = cli.start("connections", "sync", "conn")
    wait_for(started.exists, "the source to start")
    psutil.Process(int(started.read_text())).kill()  # attempt 0 fails: its source died
    wait_for(lambda: cli.json("jobs", "list")["jobs"][0]["status"] == "incomplete", "attempt 0 to fail")
    first.kill()
    cli.finish(first)
    started.unlink()
    release.touch()

    again = cli("connections", "sync", "conn", "--json")
    assert json.loads(again.stdout)["job"]["status"] == "succeeded"
    assert "was waiting to retry in a process that is gone" in again.stderr
    jobs = cli.json("jobs", "list", "--type", "sync")["jobs"]
    assert [j["status"] for j in jobs] == ["succeeded", "failed"]
    killed = cli.json("jobs", "show", str(jobs[1]["id"]))["attempts"]
    assert [a["status"] for a in killed] == ["failed"]
    assert "killed by signal 9" in killed[0]["failures"][0]["message"]
    assert configs_left(cli.home) == []


def test_the_summary_of_a_retried_sync_counts_every_attempt(tmp_path: Path) -> None:
    """As the API's rowsSynced (Airbyte's aggregatedStats): what each attempt moved, summed."""
    cli = Cli(tmp_path / "home", FERRYMAN_RETRY_BACKOFF_MIN_S="0")
    started, release = paused_connection(cli, tmp_path, [{"records": 3}, {"state": {"name": "users"}}])
    sync = cli.start("connections", "sync", "conn")
    wait_for(started.exists, "the source to start")
    psutil.Process(int(started.read_text())).kill()  # attempt 0 fails: its source died
    release.touch()  # attempt 1 runs to its end
    stdout, _ = cli.finish(sync)

    (job,) = cli.json("jobs", "list", "--type", "sync")["jobs"]
    attempts = cli.json("jobs", "show", str(job["id"]))["attempts"]
    assert [a["status"] for a in attempts] == ["failed", "succeeded"]
    emitted = sum(s["records_emitted"] for a in attempts for s in a["streams"])
    committed = sum(s["records_committed"] for a in attempts for s in a["streams"])
    assert emitted == 5 + 8
    assert f"{emitted} records emitted, {committed} committed over 2 attempts" in stdout


def test_a_sync_killed_with_sigkill_leaves_no_connector_running(tmp_path: Path) -> None:
    """No other command runs after the kill: only the killed sync's watchdog can stop its
    source, which would otherwise wait (in a session of its own) for a file that never comes."""
    cli = Cli(tmp_path / "home")
    started, _ = paused_connection(cli, tmp_path, [])  # never released
    sync = cli.start("connections", "sync", "conn")
    wait_for(started.exists, "the source to start")
    source_pid = int(started.read_text())
    connectors = [p for p in psutil.Process(sync.pid).children(recursive=True) if p.pid != source_pid]
    (watchdog,) = watchdogs_of(sync.pid)
    sync.kill()
    cli.finish(sync)

    wait_for(lambda: gone(source_pid), "the killed sync's source to be stopped")
    wait_for(lambda: all(gone(p.pid) for p in connectors), "the destination and the watchdog to end")
    assert watchdog in connectors
    # The store still says running (no command has looked since): the next one sees the truth.
    jobs = cli.json("jobs", "list", "--type", "sync")["jobs"]
    assert [j["status"] for j in jobs] == ["failed"]


# A command killed between queueing its sync and running it: what the store then holds.
QUEUED_THEN_KILLED = """
import os
from ferryman.cli.context import job_service
from ferryman.jobs.states import JobType
with job_service() as service:
    connection = service.store.get_connection("conn")
    config = service._replication_config(connection)
    engine_id = service.engine.engine_id  # this command's foreground engine
    service.store.enqueue_running(JobType.SYNC, str(connection.id), config, engine_id,
                                  service.engine.clock.now(), service.engine.log_path)
    os.kill(os.getpid(), 9)
"""


def test_a_command_killed_right_after_queueing_its_sync_does_not_wedge_it(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    scripted_connection(cli, tmp_path, [{"records": 5}, {"state": {"name": "users"}}], tmp_path / "out.jsonl")
    killed = subprocess.run([sys.executable, "-c", QUEUED_THEN_KILLED], env=cli.env, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    again = cli("connections", "sync", "conn", "--json")
    assert json.loads(again.stdout)["job"]["status"] == "succeeded"
    assert "was left running by a process that is gone" in again.stderr
    jobs = cli.json("jobs", "list", "--type", "sync")["jobs"]
    assert [j["status"] for j in jobs] == ["succeeded", "failed"]


@pytest.fixture
def interrupted(tmp_path: Path) -> Path:
    return tmp_path


def test_ctrl_c_during_connections_create_cancels_its_discover(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    started = tmp_path / "discovering"
    source = {"discover_steps": [{"touch": str(started)}, {"hang": True}], "api_key": "k-never-printed"}
    cli("sources", "create", "src", "--connector", wrapper(tmp_path, "scripted_source"), "--config",
        json.dumps(source))  # fmt: skip
    cli("destinations", "create", "dst", "--connector", wrapper(tmp_path, "scripted_destination"),
        "--config", json.dumps({"output": str(tmp_path / "out.jsonl")}))  # fmt: skip
    create = cli.start("connections", "create", "conn", "--source", "src", "--destination", "dst")
    wait_for(started.exists, "the discover to start")
    discover_pid = int(started.read_text())
    create.send_signal(signal.SIGINT)
    _, stderr = cli.finish(create)

    assert create.returncode == 1, stderr
    assert stderr.strip().splitlines() == [
        "error: discover of source 'src' was cancelled (job 1): no connection created"
    ]
    assert gone(discover_pid), "the discover process outlived the command"
    job = cli.json("jobs", "show", "1")
    assert job["job"]["status"] == "cancelled"
    assert [f["type"] for f in job["attempts"][-1]["failures"]] == ["manual_cancellation"]
    assert cli.json("connections", "list")["connections"] == []
    assert configs_left(cli.home) == []


NOISY = [
    {"records": 5},
    {"state": {"name": "users"}},
    {"stderr": "x" * 200, "repeat": 20_000},  # 4 MB of stderr for a 2 MiB disk
    {"records": 5},
    {"state": {"name": "users"}},
]


def test_a_full_disk_under_the_workspace_fails_the_sync_clearly(tmp_path: Path, small_disk: Path) -> None:
    cli = Cli(small_disk / "home", SYNC_JOB_MAX_ATTEMPTS="1")
    cli.env["FERRYMAN_DATABASE_URL"] = f"sqlite:///{tmp_path / 'ferryman.db'}"  # the store has room
    scripted_connection(cli, tmp_path, NOISY, tmp_path / "out.jsonl")
    synced = cli.start("connections", "sync", "conn")
    _, stderr = cli.finish(synced)

    assert synced.returncode == 1, stderr
    job = cli.json("jobs", "list", "--type", "sync")["jobs"][0]
    assert job["status"] == "failed"
    failures = cli.json("jobs", "show", str(job["id"]))["attempts"][-1]["failures"]
    assert any("no space left on device while writing the attempt log" in f["message"] for f in failures)
    assert configs_left(cli.home) == []


def test_a_full_disk_under_the_store_ends_the_command_with_one_line(tmp_path: Path, small_disk: Path) -> None:
    cli = Cli(small_disk / "home", SYNC_JOB_MAX_ATTEMPTS="1")
    scripted_connection(cli, tmp_path, NOISY, tmp_path / "out.jsonl")
    synced = cli.start("connections", "sync", "conn", "--json")
    _, stderr = cli.finish(synced)

    assert synced.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert configs_left(cli.home) == []


# Ctrl-C while the CLI is still loading (a real one cannot be timed to land there, so the import
# of the CLI's main module raises KeyboardInterrupt as the interpreter would).
INTERRUPTED_WHILE_LOADING = """
import sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "ferryman.entry":
            raise KeyboardInterrupt
sys.meta_path.insert(0, CtrlC())
from ferryman.start import main
main()
"""


def test_ctrl_c_while_the_cli_loads_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", INTERRUPTED_WHILE_LOADING], capture_output=True, text=True)
    assert (done.returncode, done.stderr, done.stdout) == (130, "error: interrupted\n", "")
