"""A discovered catalog checked before anything is built on it.

A catalog the connections would store and every later sync would fail on (a stream without a
name, a schema that is not an object, an unknown sync mode, one stream listed twice) is refused
at once, in one line naming the problem, and nothing is stored.
"""

from __future__ import annotations

from typing import Any

from ferryman.errors import UserInputError
from ferryman.protocol.sync_modes import SYNC_MODES


class BadCatalog(UserInputError):
    """The source's discovered catalog cannot be configured."""


def check_discovered(catalog: Any) -> dict[str, Any]:
    """The catalog, if every stream is well formed and no (namespace, name) appears twice."""
    if not isinstance(catalog, dict) or not isinstance(catalog.get("streams"), list):
        raise BadCatalog("the source's catalog is not an object with a 'streams' list")
    seen: set[tuple[str | None, str]] = set()
    for index, stream in enumerate(catalog["streams"]):
        name = _check_stream(stream, index)
        namespace = stream.get("namespace")
        if (namespace, name) in seen:
            where = f" in namespace {namespace!r}" if namespace is not None else ""
            raise BadCatalog(f"the source's catalog lists stream {name!r}{where} twice")
        seen.add((namespace, name))
    return catalog


def _check_stream(stream: Any, index: int) -> str:
    if not isinstance(stream, dict):
        raise BadCatalog(f"the source's catalog has a stream (number {index + 1}) that is not an object")
    name = stream.get("name")
    if not isinstance(name, str) or not name:
        raise BadCatalog(f"the source's catalog has a stream (number {index + 1}) without a name")
    where = f"the source's catalog: stream {name!r}"
    namespace = stream.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise BadCatalog(f"{where} has a namespace that is not a string")
    if not isinstance(stream.get("json_schema"), dict):
        raise BadCatalog(f"{where} has no json_schema object")
    # Missing means full_refresh, as Airbyte's UI reads it; present, it must say something we know.
    modes = stream.get("supported_sync_modes", [])
    if not isinstance(modes, list) or any(mode not in SYNC_MODES for mode in modes):
        raise BadCatalog(
            f"{where} has supported_sync_modes {modes!r}: expected a list of {', '.join(SYNC_MODES)}"
        )
    _check_paths(stream.get("default_cursor_field"), f"{where} default_cursor_field", nested=False)
    _check_paths(stream.get("source_defined_primary_key"), f"{where} source_defined_primary_key", nested=True)
    return name


def _check_paths(value: Any, what: str, nested: bool) -> None:
    """A cursor (a list of strings) or a primary key (a list of such lists), when present."""
    if value is None:
        return
    parts = value if nested else [value]
    if not isinstance(value, list) or not all(
        isinstance(part, list) and all(isinstance(p, str) for p in part) for part in parts
    ):
        shape = "a list of lists of field names" if nested else "a list of field names"
        raise BadCatalog(f"{what} is not {shape}")


def check_configured(configured: Any) -> dict[str, Any]:
    """A stored configured catalog, checked as its streams were when discovered."""
    if not isinstance(configured, dict) or not isinstance(configured.get("streams"), list):
        raise BadCatalog("the connection's catalog is not an object with a 'streams' list")
    check_discovered(
        {
            "streams": [
                entry.get("stream") if isinstance(entry, dict) else entry for entry in configured["streams"]
            ]
        }
    )
    return configured
