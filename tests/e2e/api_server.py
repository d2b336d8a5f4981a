"""A real ``ferryman server`` subprocess on a free port with its own FERRYMAN_HOME, for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

FERRYMAN = [sys.executable, "-m", "ferryman"]
START_TIMEOUT_S = 60.0


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen[str]

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ferryman(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FERRYMAN_HOME": str(home)}
    env.pop("FERRYMAN_DATABASE_URL", None)
    return subprocess.run([*FERRYMAN, *args], env=env, capture_output=True, text=True, timeout=120)


@contextmanager
def running_server(
    home: Path, *args: str, database_url: str | None = None, env: dict[str, str] | None = None
) -> Iterator[Server]:
    """The server on ``home``'s own SQLite store, or on ``database_url``; ``env`` adds to its
    environment (a Temporal server's address, say)."""
    port = free_port()
    env = {**os.environ, **(env or {}), "FERRYMAN_HOME": str(home)}
    env.pop("FERRYMAN_DATABASE_URL", None)
    if database_url is not None:
        env["FERRYMAN_DATABASE_URL"] = database_url
    log = (home / "server.log").open("w")
    process = subprocess.Popen(
        [*FERRYMAN, "server", "--port", str(port), *args], env=env, stdout=log, stderr=log, text=True
    )
    server = Server(f"http://127.0.0.1:{port}", home, process)
    try:
        _wait_until_up(server)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def _wait_until_up(server: Server) -> None:
    """Readiness: poll /health until it answers (or the process dies)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError((server.home / "server.log").read_text())
        try:
            if httpx.get(f"{server.v1}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("server did not start: " + (server.home / "server.log").read_text())
