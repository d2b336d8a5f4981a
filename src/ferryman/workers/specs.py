"""A connector's spec, fetched once per installed version, and the secret values of a config."""

from __future__ import annotations

import secrets as _random
from pathlib import Path
from typing import Any

import orjson

from ferryman.connectors import ResolvedConnector
from ferryman.launchers import Launcher
from ferryman.secrets import secret_keys, secret_values
from ferryman.settings import LifecycleSettings
from ferryman.workers.connector_job import ConnectorJobWorker
from ferryman.workers.files import write_private_json
from ferryman.workers.models import AttemptContext

SPEC_CACHE = "ferryman-spec.json"
_memory: dict[tuple[str, ...], dict[str, Any]] = {}


def connector_spec(
    connector: ResolvedConnector, launcher: Launcher, workspace: Path, lifecycle: LifecycleSettings
) -> dict[str, Any] | None:
    """The spec, from this process's memory, the connector's cache dir, or a spec run."""
    key = (connector.image or "", *connector.command)  # a docker: connector has no command
    if key in _memory:
        return _memory[key]
    cache = connector.cache_dir / SPEC_CACHE if connector.cache_dir else None
    if cache is not None and cache.is_file():
        try:
            cached = orjson.loads(cache.read_bytes())
        except orjson.JSONDecodeError:
            cached = None
        if isinstance(cached, dict):
            _memory[key] = cached
            return cached
    job = "spec-" + _random.token_hex(4)
    ctx = AttemptContext(job, 0, workspace / job / "0", lifecycle)
    spec = ConnectorJobWorker(launcher).spec(connector, ctx).spec
    if spec is not None:
        _memory[key] = spec
        if cache is not None:
            write_private_json(cache, spec)
    return spec


def config_secrets(spec: dict[str, Any] | None, config: dict[str, Any]) -> list[str]:
    """Values under the spec's airbyte_secret fields, and under credential-like names."""
    keys = secret_keys(spec) if spec is not None else None
    return sorted(set(secret_values(config, keys)) | set(secret_values(config, None)), key=len, reverse=True)
