"""Configured catalogs: stream selection and namespace mapping.

Catalogs stay plain dicts in the protocol's shape, so fields this version does not know about
pass through to connectors untouched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ferryman.errors import UserInputError
from ferryman.protocol.stream_refs import StreamKey, StreamRef, key, resolve
from ferryman.protocol.sync_modes import (
    APPEND_DEDUP,
    INCREMENTAL,
    UNDECLARED_DESTINATION_MODES,
    StreamKeys,
    StreamMode,
    choose_mode,
)

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


@dataclass(frozen=True)
class StreamChoice:
    """What a user asked for one stream: a mode, and the cursor or primary key the source lacks."""

    stream: StreamRef
    mode: StreamMode | None = None
    cursor: list[str] | None = None
    primary_key: list[list[str]] | None = None


@dataclass
class CatalogPlan:
    """A configured catalog, and a note for each stream whose preferred mode gave way."""

    catalog: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def configure_catalog(
    catalog: dict[str, Any],
    streams: list[str] | None = None,
    prefer_incremental: bool = True,
    dest_modes: frozenset[str] = UNDECLARED_DESTINATION_MODES | {APPEND_DEDUP},
) -> dict[str, Any]:
    """A configured catalog from a discovered one (see :func:`plan_catalog`); by default every
    destination mode is allowed, for callers that know nothing of the destination."""
    return plan_catalog(catalog, dest_modes, streams, prefer_incremental=prefer_incremental).catalog


def plan_catalog(
    catalog: dict[str, Any],
    dest_modes: frozenset[str],
    streams: list[str] | None = None,
    choices: list[StreamChoice] | None = None,
    prefer_incremental: bool = True,
) -> CatalogPlan:
    """A configured catalog from a discovered one: the selected streams (all when none is named,
    in ``streams``, as a user writes them (see :mod:`ferryman.protocol.stream_refs`), or
    ``choices``), each in its requested mode or the best mode both sides support."""
    available = catalog.get("streams", [])
    refs = [StreamRef.parse(text) for text in streams or []]
    wanted = dict.fromkeys(resolve(refs, available, "the source offers"))
    by_choice = _by_key(choices or [], available, "the source offers")
    wanted.update(dict.fromkeys(by_choice))  # in --streams order, then the rest of --stream's
    by_key = {key(s): s for s in available}
    chosen = [by_key[k] for k in wanted] if wanted else list(available)
    plan = CatalogPlan({"streams": []})
    for stream in chosen:
        choice = by_choice.get(key(stream), StreamChoice(StreamRef.named(stream["name"])))
        keys = StreamKeys.of(stream, choice.cursor, choice.primary_key)
        mode, note = choose_mode(stream, dest_modes, keys, choice.mode, prefer_incremental)
        plan.catalog["streams"].append(_configured_stream(stream, mode, keys))
        if note:
            plan.notes.append(note)
    return plan


def replan_catalog(
    configured: dict[str, Any], dest_modes: frozenset[str], choices: list[StreamChoice]
) -> dict[str, Any]:
    """A connection's configured catalog with the ``choices`` applied to the streams they name."""
    entries = configured.get("streams", [])
    by_choice = _by_key(choices, [entry["stream"] for entry in entries], "the connection syncs")
    updated = []
    for entry in entries:
        choice = by_choice.get(key(entry["stream"]))
        if choice is None:
            updated.append(entry)
            continue
        keys = StreamKeys.of(
            entry["stream"],
            choice.cursor or entry.get("cursor_field"),
            choice.primary_key or entry.get("primary_key"),
        )
        current = StreamMode(entry["sync_mode"], entry["destination_sync_mode"])
        mode, _ = choose_mode(entry["stream"], dest_modes, keys, choice.mode or current)
        updated.append(_configured_stream(entry["stream"], mode, keys))
    return {**configured, "streams": updated}


def _by_key(
    choices: list[StreamChoice], streams: list[dict[str, Any]], offered_by: str
) -> dict[StreamKey, StreamChoice]:
    """The choices by the (namespace, name) of the stream each names; a name that fits several
    streams, or a stream named twice, is refused rather than a guess or the last one winning."""
    found = resolve([choice.stream for choice in choices], streams, offered_by)
    return dict(zip(found, choices, strict=True))


def _configured_stream(stream: dict[str, Any], mode: StreamMode, keys: StreamKeys) -> dict[str, Any]:
    configured: dict[str, Any] = {
        "stream": stream,
        "sync_mode": mode.sync_mode,
        "destination_sync_mode": mode.destination_sync_mode,
    }
    if mode.sync_mode == INCREMENTAL or keys.cursor:
        configured["cursor_field"] = keys.cursor
    if keys.primary_key:
        configured["primary_key"] = keys.primary_key
    return configured


def stream_descriptors(configured_catalog: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [
        (c["stream"]["name"], c["stream"].get("namespace")) for c in configured_catalog.get("streams", [])
    ]


def check_mapping(configured_catalog: dict[str, Any], mapping: NamespaceMapping) -> None:
    """Refuse a mapping that sends two streams to one stream of the destination: their records
    would mix in one table, and the states the destination echoes for it could not be told
    apart (one stream's cursor would be saved as the other's, and its next sync skip records)."""
    seen: dict[tuple[str, str | None], tuple[str, str | None]] = {}
    for name, namespace in stream_descriptors(configured_catalog):
        target = (mapping.name(name), mapping.namespace(namespace))
        first = seen.setdefault(target, (name, namespace))
        if first != (name, namespace):
            how = mapping.definition.value
            if mapping.definition is NamespaceDefinition.CUSTOM_FORMAT:
                how += f" {mapping.format!r}"
            raise UserInputError(
                f"streams {_shown(first)} and {_shown((name, namespace))} would both be written to "
                f"{_shown(target)} of the destination (namespace {how}): keep their namespaces "
                "apart (namespace source, or a custom format with ${SOURCE_NAMESPACE}), "
                "or sync only one of them"
            )


def _shown(stream: tuple[str, str | None]) -> str:
    name, namespace = stream
    return repr(f"{namespace}.{name}" if namespace else name)


def map_catalog(configured_catalog: dict[str, Any], mapping: NamespaceMapping) -> dict[str, Any]:
    """The catalog the destination sees: stream names and namespaces after the mapping."""
    if mapping.is_identity:
        return configured_catalog
    mapped = copy.deepcopy(configured_catalog)
    for configured in mapped.get("streams", []):
        mapping.rename(configured["stream"], "name")
    return mapped


def with_generation(
    configured_catalog: dict[str, Any], sync_id: int | None, generation_id: int
) -> dict[str, Any]:
    """The catalog with Airbyte's refresh fields on every stream: ``sync_id`` (the job's id),
    ``generation_id`` and ``minimum_generation_id`` (the generation itself for an overwrite
    stream, whose older generations the destination replaces; 0 otherwise, keeping them all)."""
    marked = copy.deepcopy(configured_catalog)
    for configured in marked.get("streams", []):
        if sync_id is not None:
            configured["sync_id"] = sync_id
        configured["generation_id"] = generation_id
        overwrite = configured.get("destination_sync_mode") == "overwrite"
        configured["minimum_generation_id"] = generation_id if overwrite else 0
    return marked


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
