"""Starting connector processes, and stopping everything they started."""

from ferryman.launchers.base import ConnectorProcess, Launcher, LaunchRequest
from ferryman.launchers.docker import DockerLauncher, DockerSettings
from ferryman.launchers.local import LocalLauncher
from ferryman.launchers.routing import ConnectorLauncher

__all__ = [
    "ConnectorLauncher",
    "ConnectorProcess",
    "DockerLauncher",
    "DockerSettings",
    "LaunchRequest",
    "Launcher",
    "LocalLauncher",
]
