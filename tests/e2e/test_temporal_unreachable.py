"""Queueing a job on the Temporal engine while Temporal refuses or does not answer.

The job is in the store before its workflow is started, and the Temporal workers' sweep starts
the workflow of a job left pending without one; so a job queued while Temporal is away is queued,
not lost and not failed. What the user is told must say exactly that: no disk advice, no Rust
transport text, no error for a call that did what it was asked.

No Temporal server is needed: one test points at a port nothing listens on (refused), the other
at a listener that takes connections and never answers. That listener stands in for a hung or
black-holed Temporal frontend, which a real server cannot be made to be on demand.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.api_server import free_port, running_server


def closed_address() -> str:
    return f"127.0.0.1:{free_port()}"  # bound and released: nothing listens there now


class Silent:
    """An address that accepts TCP connections and never says a word."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.taken: list[socket.socket] = []
        self.called = threading.Event()  # someone connected: a client waits for an answer now
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                self.taken.append(self.listener.accept()[0])
            except OSError:
                continue
            self.called.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for connection in self.taken:
            connection.close()
        self.listener.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    listener = Silent()
    try:
        yield listener
    finally:
        listener.close()


class Cli:
    def __init__(self, home: Path) -> None:
        self.env = {**os.environ, "FERRYMAN_HOME": str(home)}
        for name in ("FERRYMAN_DATABASE_URL", "FERRYMAN_ENGINE", "FERRYMAN_TEMPORAL_ADDRESS"):
            self.env.pop(name, None)

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ferryman", *args],
            capture_output=True,
            text=True,
            env={**self.env, **env},
            timeout=120,
        )

    def jobs(self) -> list[dict[str, object]]:
        listed = self("jobs", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        return list(json.loads(listed.stdout)["jobs"])


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    cli = Cli(tmp_path / "home")
    for args in (
        ("sources", "create", "src", "--connector", "builtin:source-bench", "--config", '{"count": 10}'),
        ("destinations", "create", "dst", "--connector", "builtin:destination-devnull", "--config", "{}"),
        ("connections", "create", "c", "--source", "src", "--destination", "dst"),
    ):
        made = cli(*args)
        assert made.returncode == 0, made.stderr
    return cli


def on_temporal(address: str, **more: str) -> dict[str, str]:
    return {"FERRYMAN_ENGINE": "temporal", "FERRYMAN_TEMPORAL_ADDRESS": address, **more}


def test_a_sync_queued_while_temporal_refuses_is_queued_and_says_why(cli: Cli) -> None:
    address = closed_address()
    queued = cli("connections", "sync", "c", "--detach", **on_temporal(address))

    assert queued.returncode == 0, queued.stderr  # the job was queued: that is what --detach asks
    job = cli.jobs()[0]
    assert (job["type"], job["status"]) == ("sync", "pending")
    assert f"job {job['id']} (sync) is pending" in queued.stdout
    lines = queued.stderr.strip().splitlines()
    assert len(lines) == 1, queued.stderr
    assert lines[0].startswith(f"warning: cannot reach Temporal at {address}"), lines
    assert "Connection refused" in lines[0] and f"job {job['id']} stays queued" in lines[0], lines
    assert "tonic" not in queued.stderr and "Traceback" not in queued.stderr


def test_a_sync_run_here_while_temporal_is_silent_ends_in_one_line(cli: Cli, silent: Silent) -> None:
    silent_address = silent.address
    ran = cli("connections", "sync", "c", **on_temporal(silent_address, FERRYMAN_TEMPORAL_RPC_TIMEOUT_S="1"))

    assert ran.returncode == 1, ran.stderr
    job = cli.jobs()[0]
    assert job["status"] == "pending"  # queued, not failed: a worker's sweep starts it later
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert lines[0] == (
        f"error: job {job['id']} is queued, not started: Temporal at {silent_address} (namespace default)"
        " did not answer within 1 s (FERRYMAN_TEMPORAL_RPC_TIMEOUT_S); a worker starts it once it"
        f" reaches Temporal (to drop it: ferryman jobs cancel {job['id']})"
    )


def test_ctrl_c_while_temporal_is_asked_to_start_a_sync_run_here_leaves_nothing_to_run(
    cli: Cli, silent: Silent
) -> None:
    command = subprocess.Popen(
        [sys.executable, "-m", "ferryman", "connections", "sync", "c"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**cli.env, **on_temporal(silent.address)},  # 30 s to answer: Ctrl-C comes first
    )
    try:
        assert silent.called.wait(60), "the command never called Temporal"
        command.send_signal(signal.SIGINT)
        _, stderr = command.communicate(timeout=60)
    finally:
        command.kill()
        command.wait()

    assert command.returncode == 130, stderr
    assert stderr.strip() == "error: interrupted"
    job = cli.jobs()[0]
    # Not left pending for a worker's sweep to start once Temporal answers: the user stopped it.
    assert (job["type"], job["status"]) == ("sync", "cancelled")


def test_a_cancel_while_temporal_refuses_is_done_in_the_store(cli: Cli) -> None:
    assert cli("connections", "sync", "c", "--detach", **on_temporal(closed_address())).returncode == 0
    job_id = cli.jobs()[0]["id"]

    cancelled = cli("jobs", "cancel", str(job_id), **on_temporal(closed_address()))

    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"job {job_id} is cancelled"
    assert cancelled.stderr == ""
    assert cli.jobs()[0]["status"] == "cancelled"


def test_the_api_queues_a_job_while_temporal_refuses(cli: Cli, tmp_path: Path) -> None:
    address = closed_address()
    with running_server(tmp_path / "home", env=on_temporal(address)) as server:
        connection = httpx.get(f"{server.v1}/connections", timeout=30).json()["data"][0]
        answer = httpx.post(
            f"{server.v1}/jobs",
            json={"connectionId": connection["connectionId"], "jobType": "sync"},
            timeout=60,
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "pending"
    assert cli.jobs()[0]["status"] == "pending"
    log = (tmp_path / "home" / "server.log").read_text()
    assert f"job {answer.json()['jobId']} is queued; cannot reach Temporal at {address}" in log


def test_a_scheduler_pass_while_temporal_refuses_queues_and_reports_every_due_sync(cli: Cli) -> None:
    for name in ("c2", "c3"):
        made = cli("connections", "create", name, "--source", "src", "--destination", "dst")
        assert made.returncode == 0, made.stderr
    for name in ("c", "c2", "c3"):
        assert cli("connections", "update", name, "--schedule", "every 30m").returncode == 0
    address = closed_address()

    ran = cli("scheduler", "--once", "--now", "2100-01-01T00:00:00Z", "--json", **on_temporal(address))

    assert ran.returncode == 0, ran.stderr
    events = [json.loads(line) for line in ran.stdout.splitlines()]
    created = [event["job_id"] for event in events if event["event"] == "job_created"]
    assert events[-1]["event"] == "pass" and events[-1]["created"] == created
    assert len(created) == 3  # every due sync is queued and told, though none reached Temporal
    assert {job["status"] for job in cli.jobs() if job["type"] == "sync"} == {"pending"}
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr  # once per pass, not once per connection nor a traceback
    assert f"cannot reach Temporal at {address}" in lines[0] and "a worker starts it later" in lines[0]
