"""Fixtures of the worker contract tests: launchers, scripted connectors, attempt contexts."""

from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ferryman.connectors import ConnectorRef, ResolvedConnector
from ferryman.launchers import DockerLauncher, DockerSettings, Launcher, LocalLauncher
from ferryman.workers.models import AttemptContext
from tests import docker_support
from tests.contract.destination_support import pg_database  # noqa: F401 (a fixture)

CONNECTORS = Path(__file__).parent.parent / "connectors"

# The contract holds for every launcher: each contract test runs once per entry.
LAUNCHERS = ("local", "docker")


@pytest.fixture(params=LAUNCHERS)
def launcher_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def launcher(launcher_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    if launcher_kind == "local":
        yield LocalLauncher()
        return
    docker_support.require_docker("scripted-source", "scripted-destination")
    # The tests' scratch files (markers, tee files) keep their host paths inside the container.
    scratch = str(tmp_path_factory.getbasetemp())
    label = f"io.ferryman.test={uuid.uuid4().hex}"
    settings = DockerSettings(
        user=docker_support.HOST_USER, mounts=((scratch, scratch),), labels=dict([label.split("=")])
    )
    yield DockerLauncher(settings)
    left = docker_support.containers(label)
    docker_support.remove(left)
    assert not left, f"containers left behind: {left}"


def scripted(kind: str, name: str, env: dict[str, str] | None = None) -> ResolvedConnector:
    if kind == "docker":
        return docker_support.docker_connector(name.replace("_", "-"), env)
    path = CONNECTORS / f"{name}.py"
    assert path.exists(), path
    return ResolvedConnector(
        ConnectorRef("exec", str(path)), [sys.executable, str(path)], env=dict(env or {})
    )


@pytest.fixture
def source(launcher_kind: str) -> ResolvedConnector:
    """tests/connectors/scripted_source.py: runs the steps listed in its config."""
    return scripted(launcher_kind, "scripted_source")


@pytest.fixture
def spec_source(launcher_kind: str) -> Callable[[list[dict[str, Any]]], ResolvedConnector]:
    """The scripted source with the steps of its ``spec`` command (spec has no config)."""

    def make(steps: list[dict[str, Any]]) -> ResolvedConnector:
        return scripted(launcher_kind, "scripted_source", {"SCRIPTED_SPEC_STEPS": json.dumps(steps)})

    return make


@pytest.fixture
def destination(launcher_kind: str) -> ResolvedConnector:
    """tests/connectors/scripted_destination.py: misbehaves as its config says."""
    return scripted(launcher_kind, "scripted_destination")


@pytest.fixture
def context(attempt: AttemptContext) -> Callable[..., AttemptContext]:
    """The test's attempt context, with some lifecycle settings changed."""

    def make(**lifecycle: float) -> AttemptContext:
        return dataclasses.replace(attempt, lifecycle=dataclasses.replace(attempt.lifecycle, **lifecycle))

    return make
