"""Shared fixtures: an isolated FERRYMAN_HOME, a leak check on every test, real connectors."""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ferryman.connectors import ConnectorRef, ResolvedConnector, parse_reference, resolve
from ferryman.settings import LifecycleSettings
from ferryman.workers.models import AttemptContext

# The session's Temporal dev server, for the tests that run the Temporal engine.
pytest_plugins = ["tests.temporal_support"]

TESTS = Path(__file__).parent
TEST_CONNECTORS = TESTS / "connectors"
FAKER_REF = "pypi:airbyte-source-faker==7.2.1"
TAG = "FERRYMAN_TEST_TAG"


def tagged_processes(tag: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid", "name", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if proc.environ().get(TAG) == tag:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def watchdogs_of(pid: int) -> list[psutil.Process]:
    """The watchdog a Ferryman process started with its first connector (launchers/watchdog.py)."""
    return [
        child
        for child in psutil.Process(pid).children()
        if any(part.endswith("_watchdog_main.py") for part in child.cmdline())
    ]


@pytest.fixture(autouse=True)
def no_leftover_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every process a test starts inherits a tag; none may outlive the test."""
    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG, tag)
    yield
    leftovers = tagged_processes(tag)
    for proc in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    assert not leftovers, f"processes left behind: {[p.info for p in leftovers]}"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("FERRYMAN_HOME", str(path))
    return path


@pytest.fixture(scope="session")
def venvs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Managed venvs shared by the session; FERRYMAN_TEST_VENVS keeps them between runs."""
    keep = os.environ.get("FERRYMAN_TEST_VENVS")
    return Path(keep) if keep else tmp_path_factory.mktemp("venvs")


@pytest.fixture(scope="session")
def faker(venvs_dir: Path) -> ResolvedConnector:
    """airbyte-source-faker from PyPI, installed by ferryman itself into a managed venv."""
    return resolve(parse_reference(FAKER_REF), venvs_dir)


def builtin(name: str) -> ResolvedConnector:
    return resolve(parse_reference(f"builtin:{name}"), Path("/nonexistent"))


def test_connector(name: str) -> ResolvedConnector:
    """A misbehaving connector from tests/connectors, run with this interpreter."""
    path = TEST_CONNECTORS / f"{name}.py"
    assert path.exists(), path
    return ResolvedConnector(ConnectorRef("exec", str(path)), [sys.executable, str(path)])


# A job that ends sooner than this waited out none of short_lifecycle's grace periods (30 s) or
# timeouts (60 s). The distance from 15 to 30 s is for a loaded CI host, where starting and
# stopping a container can take seconds; the bound tells "stopped at once" from "waited".
NOT_WAITED_OUT_S = 15.0


def short_lifecycle(**overrides: float) -> LifecycleSettings:
    """Grace periods and timeouts that tests set short where they mean to see one end, and
    otherwise long enough never to end by accident, even on a slow host."""
    values = dict(
        exit_grace_s=30.0,
        term_grace_s=30.0,
        cancel_grace_s=30.0,
        source_heartbeat_timeout_s=60.0,
        destination_timeout_s=60.0,
    )
    values.update(overrides)
    return LifecycleSettings(**values)


@pytest.fixture
def attempt(tmp_path: Path) -> AttemptContext:
    return AttemptContext("test-job", 0, tmp_path / "attempt", short_lifecycle())
