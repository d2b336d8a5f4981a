"""Shared fixtures: an isolated FERRYMAN_HOME, a leak check on every test, real connectors."""

from __future__ import annotations

import contextlib
import os
import subprocess
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
# 0.5.40 to 0.6.0 pin a dependency version that does not exist on PyPI; 0.5.39 installs.
FILE_REF = "pypi:airbyte-source-file==0.5.39"
# The newest release when this was written; it installs on Python 3.11.
MANIFEST_REF = "pypi:airbyte-source-declarative-manifest==6.5.2"
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


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``64k``, ``2m``) mounted at ``path`` (created), for a real full disk:
    ENOSPC from the kernel, as a connector or the store meets it. Skips where mounting is not
    allowed (not root, as CI is): no fake filesystem stands in for it."""
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"fills a small tmpfs, which this user cannot mount: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a real full disk (root only)."""
    with small_tmpfs(tmp_path / "small", "2m") as mounted:
        yield mounted


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


# The session fixtures that install a PyPI connector into `venvs_dir`, and what each installs.
INSTALLED_BY_FIXTURE = {"faker": FAKER_REF, "source_file": FILE_REF, "declarative_manifest": MANIFEST_REF}
# Ferryman's own installer, as `resolve` runs it for a `pypi:` reference.
_INSTALL = """\
import sys
from pathlib import Path
from ferryman.connectors import parse_reference, resolve
resolve(parse_reference(sys.argv[1]), Path(sys.argv[2]))
"""


@pytest.fixture(scope="session", autouse=True)
def early_installs(
    request: pytest.FixtureRequest, venvs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Start installing, each in a process of its own, the PyPI connectors that the selected tests
    will ask for, so the installs (about a minute each, mostly pip waiting on downloads) run while
    the tests before them do. Each is Ferryman's own install into the session's venvs; the fixture
    that needs one calls the installer again, which waits on the package's install lock and then
    finds it done (or, had the early one failed, installs it and fails in its own words)."""
    wanted = sorted(
        {
            ref
            for item in request.session.items
            for name, ref in INSTALLED_BY_FIXTURE.items()
            if name in getattr(item, "fixturenames", ())
        }
    )
    log = tmp_path_factory.mktemp("early-installs") / "installs.log"
    # The session's, not the first test's: without its tag, so its leak check does not count them.
    env = {name: value for name, value in os.environ.items() if name != TAG}
    started = []
    with log.open("w") as output:
        for ref in wanted:
            command = [sys.executable, "-c", _INSTALL, ref, str(venvs_dir)]
            started.append(subprocess.Popen(command, stdout=output, stderr=output, env=env))
    yield
    for process in started:  # still installing when the session ends early: the guard ends pip
        if process.poll() is None:
            process.kill()
        process.wait()


def builtin(name: str) -> ResolvedConnector:
    return resolve(parse_reference(f"builtin:{name}"), Path("/nonexistent"))


def connector_script(tmp_path: Path, connector: str, name: str, first: str = "") -> Path:
    """An executable ``tmp_path/name`` that runs tests/connectors/``connector``.py with this
    interpreter, for ``exec:`` references; ``first``, when given, is a shell line it runs before.
    Asked again for the same script, it leaves the one there as it is (a connector may be running
    it)."""
    script = tmp_path / name
    lines = ["#!/bin/sh", first, f'exec "{sys.executable}" "{TEST_CONNECTORS / f"{connector}.py"}" "$@"']
    text = "".join(f"{line}\n" for line in lines if line)
    if not (script.exists() and script.read_text() == text):
        script.write_text(text)
        script.chmod(0o755)
    return script


def scripted_source(tmp_path: Path, name: str = "scripted-source", first: str = "") -> Path:
    """tests/connectors/scripted_source.py as an executable (see ``connector_script``); its spec,
    when set, from ``SCRIPTED_SPEC_STEPS`` in its environment."""
    return connector_script(tmp_path, "scripted_source", name, first)


def scripted_destination(tmp_path: Path, name: str = "scripted-destination") -> Path:
    """tests/connectors/scripted_destination.py as an executable (see ``connector_script``); its
    spec, when set, from ``SCRIPTED_DESTINATION_SPEC`` in its environment."""
    return connector_script(tmp_path, "scripted_destination", name)


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
