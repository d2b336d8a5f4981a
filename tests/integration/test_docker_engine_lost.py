"""The Docker engine lost mid-job (dockerd restarted, its socket unreachable): what a user sees.

The client talks to the real engine through a socket the test can cut (docker_support.EngineProxy),
so the engine, and the container on it, live on while Ferryman cannot reach them, as with a
DOCKER_HOST whose network dropped or a dockerd restarted with live-restore.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ferryman.jobs.retry import RetryPolicy
from ferryman.jobs.states import JobStatus
from ferryman.store import open_store
from tests import docker_support
from tests.images.build import image
from tests.integration.test_engine import service_for, wait_for_state


def test_an_engine_lost_mid_sync_fails_it_in_one_line_and_its_container_goes_once_it_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the job said "the source exited with code 125", with the CLI's log line below
    it (the source had not exited: its container ran on), and that container was left running
    for good: its removal had failed once, and nobody asked again."""
    docker_support.require_docker("scripted-source")
    store = open_store(f"sqlite:///{tmp_path / 'ferryman.db'}")
    proxy = docker_support.EngineProxy(tmp_path / "docker.sock").start()
    monkeypatch.setenv("DOCKER_HOST", proxy.docker_host)
    monkeypatch.setenv("FERRYMAN_DOCKER_LOCAL_ROOT", str(tmp_path / "local"))
    service = service_for(store, tmp_path / "home", retry=RetryPolicy(sync_max_attempts=1))
    endless = {"forever": {"stream": "users", "state_every": 50, "pause": 0.01}}
    service.create_actor("source", "src", f"docker:{image('scripted-source')}", {"read_steps": [endless]})
    service.create_actor("destination", "dst", "builtin:destination-devnull", {})
    connection = service.create_connection("conn", "src", "dst")
    job = service.enqueue_replication("conn")
    finished: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: finished.update(job=service.run(job, timeout_s=120)))
    runner.start()
    wait_for_state(store, connection.id, 60, "the sync never committed a state")

    proxy.cut()
    runner.join(120)

    assert finished["job"].status is JobStatus.FAILED
    (attempt,) = service.job_document(job.id)["attempts"]
    (failure,) = attempt["failures"]
    assert failure["type"] == "system_error"
    assert failure["message"] == (
        "lost the Docker engine while the source container ran (error waiting for container: "
        "unexpected EOF): check that dockerd is healthy (docker info)"
    )
    store_label = f"io.ferryman.store={service._engine().store_label}"

    proxy = docker_support.EngineProxy(tmp_path / "docker.sock").start()  # it answers again
    deadline = time.monotonic() + 90
    while docker_support.containers(store_label) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        assert docker_support.containers(store_label) == []
    finally:
        proxy.cut()
