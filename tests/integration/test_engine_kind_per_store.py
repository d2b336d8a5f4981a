"""One kind of engine per store: a local worker and a Temporal worker never share a store.

Both kinds on one store would each take the other's jobs (a local worker claims a queued job
whose workflow waits in Temporal; retries get decided twice). The first worker records its kind;
a worker (or server) of the other kind exits at once with one line that says what to do, until
the store is switched on purpose with ``--switch-engine``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.jobs.states import JobType
from ferryman.store import open_store
from tests.temporal_support import TemporalServer

FERRYMAN = [sys.executable, "-m", "ferryman"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    environment = {**os.environ, "FERRYMAN_HOME": str(home), "FERRYMAN_ENGINE_HEARTBEAT_S": "0.2"}
    for name in ("FERRYMAN_DATABASE_URL", "FERRYMAN_ENGINE"):
        environment.pop(name, None)
    # Nothing answers here: a refused Temporal worker must say so before it tries to connect.
    environment["FERRYMAN_TEMPORAL_ADDRESS"] = "127.0.0.1:9"
    return environment


@pytest.fixture
def temporal_env(env: dict[str, str], temporal_server: TemporalServer) -> dict[str, str]:
    return {
        **env,
        "FERRYMAN_TEMPORAL_ADDRESS": temporal_server.address,
        "FERRYMAN_TEMPORAL_NAMESPACE": temporal_server.namespace,
        "FERRYMAN_TEMPORAL_TASK_QUEUE_PREFIX": f"t{uuid.uuid4().hex[:10]}-",
    }


class Running:
    """A ``ferryman worker --json`` that has announced itself; SIGTERM and waited for at the end."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [*FERRYMAN, "worker", "--json", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        first = self.process.stdout.readline()
        assert first, f"the worker did not start: {self.process.stderr.read()}"
        self.announced = json.loads(first)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) == 0


@pytest.fixture
def started() -> Iterator[list[Running]]:
    workers: list[Running] = []
    yield workers
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


def refused(env: dict[str, str], *command: str) -> str:
    done = subprocess.run([*FERRYMAN, *command], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()  # one line, no traceback
    return line


def test_a_temporal_worker_is_refused_on_a_store_local_workers_work(
    env: dict[str, str], started: list[Running]
) -> None:
    local = Running(env)
    started.append(local)
    line = refused(env, "worker", "--engine", "temporal")
    assert "worked by the local engine" in line
    assert "--engine local" in line and "--switch-engine" in line
    # The local worker goes on working the store: a job queued now runs to success.
    with open_store(home=Path(env["FERRYMAN_HOME"])) as store:
        assert store.engine_kind() == "local"
        job = store.enqueue(JobType.SPEC, None, {"connector": "builtin:source-bench"})
        deadline = time.monotonic() + 60
        while not store.get_job(job.id).status.terminal and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.get_job(job.id).status.value == "succeeded"
    local.stop()


def test_a_local_worker_and_server_are_refused_on_a_temporal_store_until_switched(
    temporal_env: dict[str, str], started: list[Running]
) -> None:
    temporal = Running(temporal_env, "--engine", "temporal")
    started.append(temporal)
    assert "worked by the temporal engine" in refused(temporal_env, "worker")
    assert "worked by the temporal engine" in refused(temporal_env, "server", "--port", "9")
    temporal.stop()
    # Once its Temporal workers are gone, the store is moved on purpose.
    switched = Running(temporal_env, "--switch-engine")
    started.append(switched)
    with open_store(home=Path(temporal_env["FERRYMAN_HOME"])) as store:
        assert store.engine_kind() == "local"
    assert "worked by the local engine" in refused(temporal_env, "worker", "--engine", "temporal")
    switched.stop()
