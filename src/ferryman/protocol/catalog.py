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

    def rename(self, target: dict[str, Any], name_key: str) -> None:
        """Map, in place, a stream or record dict: its ``name_key`` and its ``namespace``."""
        target[name_key] = self.name(target[name_key])
        namespace = self.namespace(target.get("namespace"))
        if namespace is None:
            target.pop("namespace", None)
        else:
            target["namespace"] = namespace


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
        mapping.rename(configured["stream"], "name")
    return mapped


def reset_catalog(configured_catalog: dict[str, Any]) -> dict[str, Any]:
    """The catalog of a reset: every stream full refresh + overwrite, so the destination clears it."""
    reset = copy.deepcopy(configured_catalog)
    for configured in reset.get("streams", []):
        configured["sync_mode"] = "full_refresh"
        configured["destination_sync_mode"] = "overwrite"
    return reset


class StateNames:
    """STREAM state descriptors in destination names on the way out, in source names on the echo.

    Destinations match a STREAM state to the stream of their catalog, so it must carry the names
    they were given; the connection's state stays in the source's names. GLOBAL and LEGACY states
    pass unchanged, as in Airbyte.
    """

    def __init__(self, configured_catalog: dict[str, Any], mapping: NamespaceMapping) -> None:
        self.identity = mapping.is_identity
        self._out: dict[tuple[str, str | None], tuple[str, str | None]] = {}
        for stream in configured_catalog.get("streams", []):
            name, namespace = stream["stream"]["name"], stream["stream"].get("namespace")
            self._out[(name, namespace)] = (mapping.name(name), mapping.namespace(namespace))
        self._back = {mapped: source for source, mapped in self._out.items()}

    def to_destination(self, state: dict[str, Any]) -> dict[str, Any]:
        return self._rename(state, self._out)

    def to_source(self, state: dict[str, Any]) -> dict[str, Any]:
        return self._rename(state, self._back)

    @staticmethod
    def _rename(
        state: dict[str, Any], names: dict[tuple[str, str | None], tuple[str, str | None]]
    ) -> dict[str, Any]:
        stream = state.get("stream")
        if state.get("type") != "STREAM" or not isinstance(stream, dict):
            return state
        descriptor = stream.get("stream_descriptor") or {}
        renamed = names.get((str(descriptor.get("name")), descriptor.get("namespace")))
        if renamed is None:
            return state
        new_descriptor: dict[str, Any] = {"name": renamed[0]}
        if renamed[1] is not None:
            new_descriptor["namespace"] = renamed[1]
        return {**state, "stream": {**stream, "stream_descriptor": new_descriptor}}
