"""The launcher the engines use: Docker for docker: connectors, local processes for the rest."""

from __future__ import annotations

import threading

from ferryman.launchers.base import ConnectorProcess, LaunchRequest
from ferryman.launchers.docker import DockerLauncher, DockerSettings
from ferryman.launchers.local import LocalLauncher


class ConnectorLauncher:
    def __init__(self, docker: DockerSettings | None = None, labels: dict[str, str] | None = None) -> None:
        self.local = LocalLauncher()
        self._docker_settings = docker
        self._labels = dict(labels or {})
        self._docker: DockerLauncher | None = None
        self._lock = threading.Lock()

    @property
    def docker(self) -> DockerLauncher:
        # Built on first use, so its settings are read (and checked) only by those who use Docker.
        with self._lock:
            if self._docker is None:
                self._docker = DockerLauncher(self._docker_settings or DockerSettings.from_env(self._labels))
            return self._docker

    def launch(self, request: LaunchRequest) -> ConnectorProcess:
        if request.connector.image is not None:
            return self.docker.launch(request)
        return self.local.launch(request)
