"""Docker for tests: is an engine there, are the test images built, and nothing left running.

Tests that need Docker skip with the reason on a developer's machine without it, and fail
instead when CI=true (CI installs and starts the engine, and builds the images, first).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache

import pytest

from ferryman.connectors import ConnectorRef, ResolvedConnector
from ferryman.launchers.docker import MANAGED, list_containers, remove_containers
from tests.images.build import BuildError, ensure, image

BUILD_COMMAND = "python tests/images/build.py"
# Containers run as the user running the tests, as Ferryman's default (FERRYMAN_DOCKER_USER=host).
HOST_USER = f"{os.getuid()}:{os.getgid()}"


@cache
def _missing() -> str | None:
    """Why Docker tests cannot run here, or None when they can."""
    if shutil.which("docker") is None:
        return "no docker command (CI installs docker.io with .ci/docker-up)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        return "no Docker engine answers (start one with .ci/docker-up)"
    return None


@cache
def _image_missing(name: str) -> str | None:
    """Build the image when it is missing (after a code change, a built-in's tag changes: its
    rebuild takes seconds); the reason when it cannot be had."""
    try:
        ensure(name)
    except BuildError as exc:
        return f"test image {image(name)} could not be built ({exc}); try {BUILD_COMMAND}"
    return None


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"Docker is required in CI: {reason}")
    pytest.skip(reason)


def require_docker(*images: str) -> None:
    reason = _missing() or next((r for r in map(_image_missing, images) if r), None)
    if reason:
        skip_or_fail(reason)


def docker_connector(name: str, env: dict[str, str] | None = None) -> ResolvedConnector:
    """One of the test images (tests/images/build.py) as a docker: connector."""
    require_docker(name)
    reference = image(name)
    return ResolvedConnector(ConnectorRef("docker", reference), [], env=dict(env or {}), image=reference)


def containers(label: str = MANAGED) -> list[str]:
    """Names of the ferryman containers carrying ``label`` (key or key=value), running or not."""
    return [name for name, _ in list_containers([label])]


def remove(names: list[str]) -> None:
    remove_containers(names)
