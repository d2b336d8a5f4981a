"""``/local`` in a connector's config, for connectors that run as local processes.

Airbyte's connectors read and write local files under ``/local``: in Docker that is a mount of a
host directory (``FERRYMAN_DOCKER_LOCAL_ROOT``, default ``$FERRYMAN_HOME/local``). A connector
run as a local process (``pypi:``, ``exec:``, ``builtin:``) would look in the host's own
``/local``, which most hosts do not have, so the config file such a connector reads names the
same host directory instead: one stored config works with every launcher.

Only whole string values are mapped: ``/local`` itself, or one that starts with ``/local/``.
The stored config keeps ``/local``; a config the connector hands back (a CONTROL message) is
mapped back before it is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ferryman.connectors import ResolvedConnector
from ferryman.launchers.docker import LOCAL_MOUNT


def local_root_for(connector: ResolvedConnector, root: Path | None) -> Path | None:
    """The directory to put in place of ``/local``, or None when the connector sees ``/local``
    itself (it runs in a container, which has the mount)."""
    return root if connector.image is None else None


def to_host(config: dict[str, Any], root: Path | None) -> dict[str, Any]:
    """The config as a local process must see it; ``root`` None leaves it as it is."""
    if root is None:
        return config
    mapped: dict[str, Any] = _map(config, LOCAL_MOUNT, str(root))
    if mapped != config:
        root.mkdir(parents=True, exist_ok=True)  # a destination writing /local/x.duckdb needs it
    return mapped


def to_mount(config: dict[str, Any] | None, root: Path | None) -> dict[str, Any] | None:
    """A config a local process handed back, with ``/local`` in place of the host directory."""
    if root is None or config is None:
        return config
    mapped: dict[str, Any] = _map(config, str(root), LOCAL_MOUNT)
    return mapped


def _map(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        if value == old or value.startswith(old + "/"):
            return new + value[len(old) :]
        return value
    if isinstance(value, dict):
        return {key: _map(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [_map(item, old, new) for item in value]
    return value
