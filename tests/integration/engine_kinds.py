"""The engines under test, driven as a user drives them: ``ferryman worker`` processes.

``engine_kind`` is "local" or "temporal". Each worker is ``python -m ferryman worker --json``
with ``FERRYMAN_ENGINE`` set to that kind and ``FERRYMAN_DATABASE_URL`` to the test's store;
for Temporal it also gets the session's dev server (``FERRYMAN_TEMPORAL_ADDRESS``,
``FERRYMAN_TEMPORAL_NAMESPACE``) and a task queue prefix of this test's own
(``FERRYMAN_TEMPORAL_TASK_QUEUE_PREFIX``), so tests sharing the server never take each other's
work, and starts the workflow of a job queued in the store within a second
(``FERRYMAN_TEMPORAL_RESUBMIT_AFTER_S``). Jobs are queued through the store, as ``connections
sync --detach`` and the API do on the local engine, and cancelled through it, as ``jobs
cancel`` does; the test reads their outcome from the store.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ferryman.store.base import Job, JobStore

ENGINE_KINDS = ["local", "temporal"]
NOT_BUILT = "the temporal engine is not built yet"


def temporal_engine_built() -> bool:
    try:
        return importlib.util.find_spec("ferryman.engines.temporal") is not None
    except ModuleNotFoundError:
        return False


@pytest.fixture(params=ENGINE_KINDS)
def engine_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def engine_env(engine_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """What every worker of this test gets: the engine, a home, short heartbeats, no backoff."""
    env = {
        **os.environ,
        "FERRYMAN_ENGINE": engine_kind,
        "FERRYMAN_HOME": str(tmp_path / "home"),
        "FERRYMAN_ENGINE_HEARTBEAT_S": "0.2",
        "FERRYMAN_RETRY_BACKOFF_MIN_S": "0",
    }
    if engine_kind == "temporal":
        if not temporal_engine_built():
            pytest.skip(NOT_BUILT)
        server = request.getfixturevalue("temporal_server")
        env["FERRYMAN_TEMPORAL_ADDRESS"] = server.address
        env["FERRYMAN_TEMPORAL_NAMESPACE"] = server.namespace
        env["FERRYMAN_TEMPORAL_TASK_QUEUE_PREFIX"] = f"t{uuid.uuid4().hex[:10]}-"
        # The jobs here are queued through the store alone, with no workflow: a worker starts
        # one for each as it finds it, not after the 10 s a real submit is given to do it.
        env["FERRYMAN_TEMPORAL_RESUBMIT_AFTER_S"] = "0.5"
    return env


@dataclass
class Worker:
    process: subprocess.Popen[str]
    engine_id: str
    said: list[str] = field(default_factory=list)  # its stderr, for failure messages

    @property
    def pid(self) -> int:
        return self.process.pid


class Workers:
    """``ferryman worker`` processes on one store; all are stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url = url
        self.env = env
        self.started: list[Worker] = []

    def start(self, **extra_env: str) -> Worker:
        env = {**self.env, "FERRYMAN_DATABASE_URL": self.url, **extra_env}
        process = subprocess.Popen(
            [sys.executable, "-m", "ferryman", "worker", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None and process.stderr is not None
        worker = Worker(process, "")
        threading.Thread(target=_drain, args=(process.stderr, worker.said), daemon=True).start()
        first = process.stdout.readline()  # {"event": "started", ...}: it is up
        assert first, f"the worker did not start: {''.join(worker.said)}"
        worker.engine_id = json.loads(first)["engine_id"]
        threading.Thread(target=_drain, args=(process.stdout, []), daemon=True).start()
        self.started.append(worker)
        return worker

    def kill(self, worker: Worker) -> None:
        os.kill(worker.pid, signal.SIGKILL)
        worker.process.wait()

    def stop_all(self) -> None:
        """SIGTERM: each stops claiming, lets its attempts finish and exits 0."""
        alive = [w for w in self.started if w.process.poll() is None]
        for worker in alive:
            worker.process.send_signal(signal.SIGTERM)
        for worker in alive:
            assert worker.process.wait(120) == 0, f"worker failed: {''.join(worker.said)}"

    def close(self) -> None:
        for worker in self.started:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()

    def stderr(self) -> str:
        return "".join(line for worker in self.started for line in worker.said)


def _drain(stream: object, into: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.append(line)


@pytest.fixture
def workers_for(engine_env: dict[str, str]) -> Iterator[type]:
    """``workers_for(url)``: a :class:`Workers` pool on that store, closed after the test."""
    pools: list[Workers] = []

    class Pool(Workers):
        def __init__(self, url: str) -> None:
            super().__init__(url, engine_env)
            pools.append(self)

    yield Pool
    for pool in pools:
        pool.close()


def wait_until_terminal(
    store: JobStore, job_ids: Collection[int], workers: Workers, timeout_s: float = 120
) -> list[Job]:
    """Poll the store until these jobs are terminal; fail (with the workers' stderr) after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = [store.get_job(job_id) for job_id in job_ids]
        if all(job.status.terminal for job in jobs):
            return jobs
        dead = [w for w in workers.started if w.process.poll() not in (None, -signal.SIGKILL)]
        assert not dead, f"a worker died: {workers.stderr()}"
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs not done after {timeout_s}s: {jobs}\n{workers.stderr()}")
        time.sleep(0.05)
