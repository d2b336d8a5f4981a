"""Starting connector processes, and stopping everything they started."""

from ferryman.launchers.base import ConnectorProcess, Launcher, LaunchRequest
from ferryman.launchers.local import LocalLauncher

__all__ = ["ConnectorProcess", "LaunchRequest", "Launcher", "LocalLauncher"]
