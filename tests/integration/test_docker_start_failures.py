"""Containers that never run their connector: Docker's own exit codes (125, 126, 127), as a user
of the engine sees them: the job's status, how many attempts, the failure's type and its line.

Needs a Docker engine and the test images (tests/images/build.py): skipped with the reason when
they are missing, failed instead when CI=true.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferryman.connectors.docker import run_docker
from ferryman.jobs.states import JobStatus
from ferryman.service import JobService
from ferryman.store import open_store
from ferryman.store.base import JobStore
from tests import docker_support
from tests.images.build import image
from tests.integration.test_engine import service_for


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return open_store(f"sqlite:///{tmp_path / 'ferryman.db'}")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    docker_support.require_docker("scripted-source")
    monkeypatch.setenv("FERRYMAN_DOCKER_LOCAL_ROOT", str(tmp_path / "local"))
    return tmp_path / "home"


@pytest.fixture
def service(store: JobStore, home: Path) -> JobService:
    return service_for(store, home)


@pytest.fixture
def entrypoint_image() -> Iterator[Any]:
    """Make images of the scripted source with another entrypoint (a missing file, ``true``),
    built locally from it in a second (no layer, no network); removed at the end."""
    made: list[str] = []

    def make(entrypoint: str) -> str:
        name = f"ferryman-test/entrypoint-{uuid.uuid4().hex[:10]}:1"
        dockerfile = f'FROM {image("scripted-source")}\nENTRYPOINT ["{entrypoint}"]\n'
        built = docker_support.subprocess.run(
            ["docker", "build", "--quiet", "--network", "none", "-t", name, "-"],
            input=dockerfile,
            capture_output=True,
            text=True,
        )
        assert built.returncode == 0, built.stderr
        made.append(name)
        return name

    yield make
    for name in made:
        run_docker("rmi", "--force", name)


def sync_with(
    store: JobStore, home: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **resources: str
) -> tuple[Any, dict[str, Any]]:
    """A sync of the scripted source in a container, by an engine started with ``env`` set (the
    connection is made, and its source discovered, before)."""
    setup = service_for(store, home)
    source = f"docker:{image('scripted-source')}"
    setup.create_actor("source", "src", source, {"read_steps": [{"records": 3}]}, resources=resources)
    setup.create_actor("destination", "dst", "builtin:destination-devnull", {})
    setup.create_connection("conn", "src", "dst")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    service = service_for(store, home)  # an engine reads its Docker settings when it starts
    job = service.run(service.enqueue_replication("conn"), timeout_s=120)
    return job, service.job_document(job.id)


def failures(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for attempt in document["attempts"] for f in attempt["failures"]]


def test_a_cpu_limit_docker_refuses_fails_the_sync_once_as_a_config_error_naming_the_variable(
    store: JobStore, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, docker run's exit code 125 (the engine refused --cpus) read as a source that
    failed: a system_error, retried twice more, its message the CLI's usage text."""
    more_than_any_host_has = {"JOB_MAIN_CONTAINER_CPU_LIMIT": "4096"}

    job, document = sync_with(store, home, monkeypatch, more_than_any_host_has)

    assert job.status is JobStatus.FAILED
    assert len(document["attempts"]) == 1  # a config error is not retried
    (failure,) = failures(document)
    assert failure["type"] == "config_error", failure
    message = failure["message"]
    assert "\n" not in message and "docker run --help" not in message
    assert message.startswith("Docker refused to start the source container: ")
    assert "CPUs" in message and message.endswith("check JOB_MAIN_CONTAINER_CPU_LIMIT (4096)")
    assert docker_support.containers() == []


def test_a_memory_limit_below_the_request_blames_both_settings_by_their_names(
    store: JobStore, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"JOB_MAIN_CONTAINER_MEMORY_REQUEST": "64m"}

    job, document = sync_with(store, home, monkeypatch, env, memory_limit="32m")

    assert job.status is JobStatus.FAILED and len(document["attempts"]) == 1
    (failure,) = failures(document)
    assert failure["type"] == "config_error", failure
    assert "the connector's --memory-limit (32m)" in failure["message"]
    assert "JOB_MAIN_CONTAINER_MEMORY_REQUEST (64m)" in failure["message"]
    assert docker_support.containers() == []


def test_a_network_that_does_not_exist_is_a_config_error_of_the_setting(
    store: JobStore, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"FERRYMAN_DOCKER_NETWORK": "no-such-network-of-ferryman"}

    job, document = sync_with(store, home, monkeypatch, env)

    assert job.status is JobStatus.FAILED and len(document["attempts"]) == 1
    (failure,) = failures(document)
    assert failure["type"] == "config_error"
    assert "no-such-network-of-ferryman not found" in failure["message"]
    assert "FERRYMAN_DOCKER_NETWORK (no-such-network-of-ferryman)" in failure["message"]


def test_a_limit_that_is_not_a_number_fails_the_sync_once(
    store: JobStore, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the bad variable failed the launch as a system_error: three attempts, same line."""
    env = {"JOB_MAIN_CONTAINER_CPU_LIMIT": "abc"}

    job, document = sync_with(store, home, monkeypatch, env)

    assert job.status is JobStatus.FAILED and len(document["attempts"]) == 1
    (failure,) = failures(document)
    assert failure["type"] == "config_error"
    assert failure["message"] == (
        "JOB_MAIN_CONTAINER_CPU_LIMIT must be a positive number of CPUs such as 0.5 or 2, got 'abc'"
    )


def test_an_image_whose_entrypoint_does_not_exist_says_so_in_one_line(
    service: JobService, entrypoint_image: Any
) -> None:
    """Exit code 127 from docker-init: the image's command was not found. A system error (the
    image is broken, not the user's settings), in words, without the usage text."""
    broken = entrypoint_image("/no/such/connector")

    job = service.run(service.enqueue_spec(f"docker:{broken}", "test"), timeout_s=120)

    assert job.status is JobStatus.FAILED
    (first,) = failures(service.job_document(job.id))
    assert first["type"] == "system_error"
    assert first["message"] == (
        "the spec container's command was not found (exit code 127: exec /no/such/connector "
        "failed: No such file or directory): check the image's entrypoint, or that the image is "
        "an Airbyte connector"
    )
    assert docker_support.containers() == []


def test_an_image_that_prints_nothing_and_exits_0_fails_its_spec(
    service: JobService, entrypoint_image: Any
) -> None:
    silent = entrypoint_image("true")

    job = service.run(service.enqueue_spec(f"docker:{silent}", "test"), timeout_s=120)

    assert job.status is JobStatus.FAILED
    (failure,) = failures(service.job_document(job.id))
    assert failure["message"] == "spec produced no SPEC message: the connector exited with code 0"
    assert docker_support.containers() == []
