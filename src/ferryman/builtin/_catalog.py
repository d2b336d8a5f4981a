"""Configured catalogs and states as the built-in connectors see them.

Parsing is lenient where the protocol has defaults (a stream without ``sync_mode`` reads in
full, one without ``destination_sync_mode`` appends) and strict where a connector could not
act sensibly; problems are reported as ``ValueError`` with a message meant for the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

StreamKey = tuple[str | None, str]
"""(namespace, name): how streams are matched between catalog, records and states."""

SYNC_MODES = ("full_refresh", "incremental")
DESTINATION_SYNC_MODES = ("append", "overwrite", "append_dedup")


@dataclass(frozen=True)
class ConfiguredStream:
    name: str
    namespace: str | None = None
    json_schema: dict[str, Any] = field(default_factory=dict)
    sync_mode: str = "full_refresh"
    destination_sync_mode: str = "append"
    primary_key: list[list[str]] = field(default_factory=list)
    cursor_field: list[str] = field(default_factory=list)
    generation_id: int = 0  # the catalog's, stored in _airbyte_generation_id
    sync_id: int | None = None  # the catalog's, stored in _airbyte_meta

    @property
    def key(self) -> StreamKey:
        return (self.namespace, self.name)

    @property
    def label(self) -> str:
        return f"{self.namespace}.{self.name}" if self.namespace else self.name


class WriteMode:
    """What a destination's table of one stream does by its ``destination_sync_mode``."""

    mode: str

    @property
    def overwrite(self) -> bool:
        return self.mode == "overwrite"

    @property
    def holds(self) -> bool:
        """Whether records after the stream's last state wait for a state or its completion
        (:mod:`ferryman.builtin._destination`): append and overwrite. Not append_dedup: its
        merge makes a record a retry sends again replace the first copy."""
        return self.mode != "append_dedup"


def _str_or_none(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{what} must be a string, got {value!r}")


def _key_paths(value: Any, what: str) -> list[list[str]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(path, list) and path and all(isinstance(part, str) for part in path) for path in value
    ):
        raise ValueError(f"{what} must be a list of field paths (lists of strings)")
    return [list(path) for path in value]


def _configured_stream(entry: Any, index: int) -> ConfiguredStream:
    where = f"catalog stream #{index}"
    if not isinstance(entry, dict) or not isinstance(entry.get("stream"), dict):
        raise ValueError(f"{where} must be an object with a 'stream' object")
    stream = entry["stream"]
    name = stream.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where} has no stream name")
    where = f"catalog stream '{name}'"
    sync_mode = entry.get("sync_mode") or "full_refresh"
    if sync_mode not in SYNC_MODES:
        raise ValueError(f"{where}: unknown sync_mode {sync_mode!r}")
    destination_sync_mode = entry.get("destination_sync_mode") or "append"
    if not isinstance(destination_sync_mode, str):
        raise ValueError(f"{where}: destination_sync_mode must be a string")
    primary_key = _key_paths(entry.get("primary_key"), f"{where}: primary_key")
    if not primary_key:
        primary_key = _key_paths(
            stream.get("source_defined_primary_key"), f"{where}: source_defined_primary_key"
        )
    cursor = entry.get("cursor_field") or stream.get("default_cursor_field") or []
    if not isinstance(cursor, list) or not all(isinstance(part, str) for part in cursor):
        raise ValueError(f"{where}: cursor_field must be a list of strings")
    schema = stream.get("json_schema")
    return ConfiguredStream(
        name=name,
        namespace=_str_or_none(stream.get("namespace"), f"{where}: namespace"),
        json_schema=schema if isinstance(schema, dict) else {},
        sync_mode=sync_mode,
        destination_sync_mode=destination_sync_mode,
        primary_key=primary_key,
        cursor_field=list(cursor),
        generation_id=_int_or(entry.get("generation_id"), 0) or 0,
        sync_id=_int_or(entry.get("sync_id"), None),
    )


def _int_or(value: Any, default: int | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def parse_catalog(raw: Any) -> list[ConfiguredStream]:
    """The streams of a configured catalog, in catalog order."""
    if not isinstance(raw, dict) or not isinstance(raw.get("streams"), list):
        raise ValueError("the catalog must be an object with a 'streams' list")
    streams = [_configured_stream(entry, i) for i, entry in enumerate(raw["streams"])]
    seen: set[StreamKey] = set()
    for stream in streams:
        if stream.key in seen:
            raise ValueError(f"stream '{stream.label}' appears twice in the catalog")
        seen.add(stream.key)
    return streams


def _descriptor_key(descriptor: Any) -> StreamKey:
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("name"), str):
        raise ValueError("a stream state has no stream_descriptor with a name")
    return (_str_or_none(descriptor.get("namespace"), "a stream namespace"), descriptor["name"])


def _add_state_message(message: dict[str, Any], states: dict[StreamKey, Any]) -> None:
    kind = message.get("type")
    if kind == "STREAM" or (kind is None and "stream" in message):
        body = message.get("stream")
        if not isinstance(body, dict):
            raise ValueError("a STREAM state has no 'stream' object")
        states[_descriptor_key(body.get("stream_descriptor"))] = body.get("stream_state")
    elif kind == "GLOBAL":
        body = message.get("global")
        if not isinstance(body, dict):
            raise ValueError("a GLOBAL state has no 'global' object")
        for entry in body.get("stream_states") or []:
            if not isinstance(entry, dict):
                raise ValueError("a GLOBAL state has a malformed stream state")
            states[_descriptor_key(entry.get("stream_descriptor"))] = entry.get("stream_state")
    elif kind == "LEGACY" or (kind is None and "data" in message):
        _add_legacy(message.get("data"), states)
    else:
        raise ValueError(f"unknown state type {kind!r}")


def _add_legacy(data: Any, states: dict[StreamKey, Any]) -> None:
    if data is None:
        return
    if not isinstance(data, dict):
        raise ValueError("a legacy state must be an object of per-stream states")
    for name, value in data.items():
        states[(None, name)] = value


def parse_input_state(raw: Any) -> dict[StreamKey, Any]:
    """Per-stream states from a ``--state`` file.

    Accepts the current format (a list of state messages, STREAM or GLOBAL, optionally wrapped
    in their AirbyteMessage envelope) and the legacy one (an object mapping stream names to
    their states).
    """
    states: dict[StreamKey, Any] = {}
    if raw is None:
        return states
    if isinstance(raw, dict):
        if raw.get("type") in ("STREAM", "GLOBAL", "LEGACY"):
            _add_state_message(raw, states)
        else:
            _add_legacy(raw, states)
        return states
    if not isinstance(raw, list):
        raise ValueError("the state must be a list of state messages or an object")
    for entry in raw:
        if not isinstance(entry, dict):
            raise ValueError("each state in the state list must be an object")
        if entry.get("type") == "STATE" and isinstance(entry.get("state"), dict):
            entry = entry["state"]
        _add_state_message(entry, states)
    return states


def state_scope(message: dict[str, Any]) -> StreamKey | None:
    """The stream a STATE message checkpoints, or None when it covers every stream."""
    state = message.get("state")
    if isinstance(state, dict) and state.get("type") == "STREAM":
        body = state.get("stream")
        if isinstance(body, dict):
            try:
                return _descriptor_key(body.get("stream_descriptor"))
            except ValueError:
                return None
    return None


def completed_stream(message: dict[str, Any]) -> StreamKey | None:
    """The stream a TRACE ``STREAM_STATUS`` message marks ``COMPLETE``, else None.

    Any other TRACE (another status, another trace type, a malformed body) gives None.
    """
    trace = message.get("trace")
    if not isinstance(trace, dict) or trace.get("type") != "STREAM_STATUS":
        return None
    status = trace.get("stream_status")
    if not isinstance(status, dict) or status.get("status") != "COMPLETE":
        return None
    try:
        return _descriptor_key(status.get("stream_descriptor"))
    except ValueError:
        return None
