"""A connector's spec, fetched once per installed version, and the secret values of a config."""

from __future__ import annotations

import secrets as _random
import shutil
from pathlib import Path
from typing import Any

import orjson

from ferryman.connectors import ResolvedConnector
from ferryman.launchers import Launcher
from ferryman.secrets import SecretRules, secret_values
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
    cached = cached_spec(connector)
    if cached is not None:
        return cached
    key = _key(connector)
    cache = connector.cache_dir / SPEC_CACHE if connector.cache_dir else None
    job = "spec-" + _random.token_hex(4)
    ctx = AttemptContext(job, 0, workspace / job / "0", lifecycle)
    spec = ConnectorJobWorker(launcher).spec(connector, ctx).spec
    if spec is not None:
        # A spec that worked leaves nothing worth reading; a failed one keeps its log.
        shutil.rmtree(workspace / job, ignore_errors=True)
        _memory[key] = spec
        if cache is not None:
            write_private_json(cache, spec)
    return spec


def _key(connector: ResolvedConnector) -> tuple[str, ...]:
    return (connector.image or "", *connector.command)  # a docker: connector has no command


def cached_spec(connector: ResolvedConnector) -> dict[str, Any] | None:
    """The spec if this process or the connector's cache dir has it: never starts a process."""
    key = _key(connector)
    if key in _memory:
        return _memory[key]
    cache = connector.cache_dir / SPEC_CACHE if connector.cache_dir else None
    if cache is None or not cache.is_file():
        return None
    try:
        cached = orjson.loads(cache.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(cached, dict):
        return None
    _memory[key] = cached
    return cached


def config_secrets(spec: dict[str, Any] | None, config: dict[str, Any]) -> list[str]:
    """The values of a config to mask in text (see :mod:`ferryman.secrets`)."""
    return secret_values(config, SecretRules.of(spec, config))
