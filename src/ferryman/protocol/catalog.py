"""Configured catalogs: stream selection and namespace mapping.

Catalogs stay plain dicts in the protocol's shape, so fields this version does not know about
pass through to connectors untouched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ferryman.errors import UserInputError

SOURCE_NAMESPACE_TOKEN = "${SOURCE_NAMESPACE}"


class NamespaceDefinition(StrEnum):
    SOURCE = "source"
    DESTINATION = "destination"
    CUSTOM_FORMAT = "customformat"


@dataclass(frozen=True)
class NamespaceMapping:
    """Where the destination writes each stream: Airbyte's namespace definition plus a prefix."""

    definition: NamespaceDefinition = NamespaceDefinition.SOURCE
    format: str | None = None
    prefix: str = ""

    @property
    def is_identity(self) -> bool:
        return self.definition is NamespaceDefinition.SOURCE and not self.prefix

    def namespace(self, source_namespace: str | None) -> str | None:
        if self.definition is NamespaceDefinition.SOURCE:
            return source_namespace
        if self.definition is NamespaceDefinition.DESTINATION:
            return None
        mapped = (self.format or "").replace(SOURCE_NAMESPACE_TOKEN, source_namespace or "")
        return mapped.strip() or None

    def name(self, stream: str) -> str:
        return self.prefix + stream


def configure_catalog(
    catalog: dict[str, Any],
    streams: list[str] | None = None,
    prefer_incremental: bool = True,
) -> dict[str, Any]:
    """A configured catalog from a discovered one, as a user of ``ferryman sync`` expects it.

    Each selected stream syncs incrementally when the source supports it (append_dedup when it
    has a primary key, append otherwise), else as full refresh with overwrite.
    """
    available = catalog.get("streams", [])
    by_name = {s["name"]: s for s in available}
    if streams:
        unknown = [name for name in streams if name not in by_name]
        if unknown:
            raise UserInputError(
                f"unknown stream(s) {', '.join(unknown)}: the source offers "
                f"{', '.join(sorted(by_name)) or 'no streams'}"
            )
        chosen = [by_name[name] for name in streams]
    else:
        chosen = list(available)
    return {"streams": [_configure_stream(s, prefer_incremental) for s in chosen]}


def _configure_stream(stream: dict[str, Any], prefer_incremental: bool) -> dict[str, Any]:
    modes = stream.get("supported_sync_modes") or ["full_refresh"]
    primary_key = stream.get("source_defined_primary_key") or []
    configured: dict[str, Any] = {"stream": stream}
    if prefer_incremental and "incremental" in modes:
        configured["sync_mode"] = "incremental"
        configured["destination_sync_mode"] = "append_dedup" if primary_key else "append"
        configured["cursor_field"] = stream.get("default_cursor_field") or []
    else:
        configured["sync_mode"] = "full_refresh"
        configured["destination_sync_mode"] = "overwrite"
    if primary_key:
        configured["primary_key"] = primary_key
    return configured


def stream_descriptors(configured_catalog: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [
        (c["stream"]["name"], c["stream"].get("namespace")) for c in configured_catalog.get("streams", [])
    ]


def map_catalog(configured_catalog: dict[str, Any], mapping: NamespaceMapping) -> dict[str, Any]:
    """The catalog the destination sees: stream names and namespaces after the mapping."""
    if mapping.is_identity:
        return configured_catalog
    mapped = copy.deepcopy(configured_catalog)
    for configured in mapped.get("streams", []):
        stream = configured["stream"]
        stream["name"] = mapping.name(stream["name"])
        namespace = mapping.namespace(stream.get("namespace"))
        if namespace is None:
            stream.pop("namespace", None)
        else:
            stream["namespace"] = namespace
    return mapped


def reset_catalog(configured_catalog: dict[str, Any]) -> dict[str, Any]:
    """The catalog of a reset: every stream full refresh + overwrite, so the destination clears it."""
    reset = copy.deepcopy(configured_catalog)
    for configured in reset.get("streams", []):
        configured["sync_mode"] = "full_refresh"
        configured["destination_sync_mode"] = "overwrite"
    return reset
