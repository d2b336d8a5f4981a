"""source-empty: the source side of a RESET job, like Airbyte's EmptyAirbyteSource.

Config::

    streams      the streams to reset: [{"name": ..., "namespace": ...}, ...]
    state_type   "STREAM" (default), "GLOBAL" or "LEGACY"

``read`` emits no records, only states that clear the streams: for STREAM one state per stream
with a null ``stream_state``; for GLOBAL one state with a null ``shared_state`` and a null state
per stream; for LEGACY one state with ``data: {}``. When the config lists no streams, the
streams of the configured catalog are reset. ``discover`` lists the configured streams with an
empty object schema.
"""

from __future__ import annotations

from ferryman.builtin._runtime import ConfigError, Connector, Output, object_schema, run
from ferryman.protocol import messages

TYPE_CHECKING = False  # typing's, without importing typing (see ferryman.builtin._runtime)
if TYPE_CHECKING:
    from typing import Any

    from ferryman.builtin._catalog import ConfiguredStream, StreamKey

NAME = "source-empty"
STATE_TYPES = ("STREAM", "GLOBAL", "LEGACY")


class EmptyConfig:
    """The parsed config (a plain class: see ferryman.builtin._runtime on the spec's imports)."""

    __slots__ = ("state_type", "streams")

    def __init__(self, streams: tuple[StreamKey, ...], state_type: str) -> None:
        self.streams = streams
        self.state_type = state_type


def _stream_key(entry: Any) -> StreamKey:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise ConfigError("each entry of config field 'streams' needs a non-empty 'name'")
    namespace = entry.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise ConfigError(f"the namespace of stream '{entry['name']}' must be a string")
    return (namespace, entry["name"])


def parse_config(raw: dict[str, Any]) -> EmptyConfig:
    streams = raw.get("streams", [])
    if not isinstance(streams, list):
        raise ConfigError("config field 'streams' must be a list of {name, namespace} objects")
    state_type = raw.get("state_type", "STREAM")
    if state_type not in STATE_TYPES:
        raise ConfigError(f"config field 'state_type' must be one of {', '.join(STATE_TYPES)}")
    keys = tuple(_stream_key(entry) for entry in streams)
    return EmptyConfig(streams=tuple(dict.fromkeys(keys)), state_type=state_type)


SPECIFICATION = object_schema(
    {
        "streams": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "namespace": {"type": ["string", "null"]},
                },
                "required": ["name"],
            },
            "default": [],
            "description": "Streams to reset; empty means every stream of the catalog.",
        },
        "state_type": {
            "type": "string",
            "enum": list(STATE_TYPES),
            "default": "STREAM",
            "description": "Kind of state messages to emit.",
        },
    },
    title="Empty source (resets)",
)


def check(config: EmptyConfig) -> str | None:
    return None


def discover(config: EmptyConfig) -> list[dict[str, Any]]:
    streams = []
    for namespace, name in config.streams:
        stream: dict[str, Any] = {
            "name": name,
            "json_schema": {"type": "object", "properties": {}},
            "supported_sync_modes": ["full_refresh", "incremental"],
        }
        if namespace is not None:
            stream["namespace"] = namespace
        streams.append(stream)
    return streams


def read(
    config: EmptyConfig,
    catalog: list[ConfiguredStream],
    states: dict[StreamKey, Any],
    out: Output,
) -> None:
    streams = list(config.streams) or [stream.key for stream in catalog]
    if config.state_type == "LEGACY":
        out.emit(messages.legacy_state({}))
    elif config.state_type == "GLOBAL":
        out.emit(messages.global_state(None, [(name, ns, None) for ns, name in streams]))
    else:
        for namespace, name in streams:
            out.emit(messages.stream_state(name, None, namespace))


CONNECTOR = Connector(
    name=NAME,
    specification=SPECIFICATION,
    parse_config=parse_config,
    check=check,
    discover=discover,
    read=read,
)

if __name__ == "__main__":
    run(CONNECTOR)
