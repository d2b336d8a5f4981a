"""Docker for tests: is an engine there, are the test images built, and nothing left running.

Tests that need Docker skip with the reason on a developer's machine without it, and fail
instead when CI=true (CI installs and starts the engine, and builds the images, first).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from functools import cache
from pathlib import Path

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


REGISTRY_COMMAND = "docker-registry"  # Debian's package of the CNCF distribution registry
REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
"""


class LocalRegistry:
    """A real registry (Debian's docker-registry) on a free port of 127.0.0.1, storing under a
    directory; a context manager that stops it at the end. The engine talks plain HTTP to it
    without configuration: registries on 127.0.0.0/8 are trusted by default. CI installs the
    package (.ci/run)."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which(REGISTRY_COMMAND)
        if binary is None:
            skip_or_fail(f"no {REGISTRY_COMMAND} command (apt-get install docker-registry)")
        root.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = root / "config.yml"
        config.write_text(REGISTRY_CONFIG.format(root=root / "storage", port=port))
        self.address = f"127.0.0.1:{port}"
        self._log_path = root / "registry.log"
        self._log = self._log_path.open("wb")
        self._server = subprocess.Popen(
            [str(binary), "serve", str(config)], stdout=self._log, stderr=subprocess.STDOUT
        )

    def __enter__(self) -> LocalRegistry:
        try:
            self._wait_until_answering(f"http://{self.address}/v2/")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._server.poll() is None:
            self._server.terminate()
            self._server.wait(30)
        self._log.close()

    def _wait_until_answering(self, url: str) -> None:
        for _ in range(300):
            if self._server.poll() is not None:
                pytest.fail(f"the registry exited with code {self._server.returncode}: {self._tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.05)
        pytest.fail(f"the registry at {url} did not answer: {self._tail()}")

    def _tail(self) -> str:
        return self._log_path.read_text()[-2000:]


class EngineProxy:
    """A unix socket that forwards to the Docker engine's, for a client pointed at it with
    DOCKER_HOST; ``cut()`` closes the socket and every connection through it at once, as a
    restarted dockerd (or a network between them) would, while the engine itself lives on."""

    def __init__(self, path: Path, engine: str = "/var/run/docker.sock") -> None:
        import threading

        self.path = path
        self._engine = engine
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._threading = threading

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> EngineProxy:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        self._threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._open = self._open, []
        for sock in ([listener] if listener else []) + sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self._engine)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                self._threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
