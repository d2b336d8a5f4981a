"""Builders for the messages Ferryman and its built-in connectors emit.

Each returns a plain dict in the protocol's shape; :func:`ferryman.protocol.codec.encode` turns
it into a line. Optional fields are left out rather than sent as null.

Nothing here imports the codec (msgspec, orjson): a built-in connector answering ``spec`` builds
its one message with this module and pays for no more than the standard library.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (see ferryman.builtin._runtime)
if TYPE_CHECKING:
    from typing import Any


class MessageType:
    """The ``type`` of each message (plain strings: an enum would import ``enum``)."""

    RECORD = "RECORD"
    STATE = "STATE"
    LOG = "LOG"
    SPEC = "SPEC"
    CONNECTION_STATUS = "CONNECTION_STATUS"
    CATALOG = "CATALOG"
    TRACE = "TRACE"
    CONTROL = "CONTROL"


def _descriptor(name: str, namespace: str | None) -> dict[str, Any]:
    descriptor: dict[str, Any] = {"name": name}
    if namespace is not None:
        descriptor["namespace"] = namespace
    return descriptor


def record(
    stream: str, data: dict[str, Any], emitted_at_ms: int, namespace: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"stream": stream, "data": data, "emitted_at": emitted_at_ms}
    if namespace is not None:
        body["namespace"] = namespace
    return {"type": MessageType.RECORD, "record": body}


def stream_state(
    stream: str, state: Any, namespace: str | None = None, record_count: float | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "STREAM",
        "stream": {"stream_descriptor": _descriptor(stream, namespace), "stream_state": state},
    }
    if record_count is not None:
        message["sourceStats"] = {"recordCount": record_count}
    return {"type": MessageType.STATE, "state": message}


def global_state(shared_state: Any, stream_states: list[tuple[str, str | None, Any]]) -> dict[str, Any]:
    return {
        "type": MessageType.STATE,
        "state": {
            "type": "GLOBAL",
            "global": {
                "shared_state": shared_state,
                "stream_states": [
                    {"stream_descriptor": _descriptor(name, ns), "stream_state": state}
                    for name, ns, state in stream_states
                ],
            },
        },
    }


def legacy_state(data: Any) -> dict[str, Any]:
    return {"type": MessageType.STATE, "state": {"type": "LEGACY", "data": data}}


def log(level: str, message: str, stack_trace: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"level": level, "message": message}
    if stack_trace is not None:
        body["stack_trace"] = stack_trace
    return {"type": MessageType.LOG, "log": body}


def spec(connection_specification: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": MessageType.SPEC,
        "spec": {"connectionSpecification": connection_specification, **extra},
    }


def connection_status(succeeded: bool, message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "SUCCEEDED" if succeeded else "FAILED"}
    if message is not None:
        body["message"] = message
    return {"type": MessageType.CONNECTION_STATUS, "connectionStatus": body}


def catalog(streams: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": MessageType.CATALOG, "catalog": {"streams": streams}}


def trace_error(
    message: str,
    emitted_at_ms: float,
    failure_type: str = "system_error",
    internal_message: str | None = None,
    stack_trace: str | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "failure_type": failure_type}
    if internal_message is not None:
        error["internal_message"] = internal_message
    if stack_trace is not None:
        error["stack_trace"] = stack_trace
    return {
        "type": MessageType.TRACE,
        "trace": {"type": "ERROR", "emitted_at": emitted_at_ms, "error": error},
    }


def trace_estimate(
    name: str,
    emitted_at_ms: float,
    row_estimate: int | None = None,
    byte_estimate: int | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:
    estimate: dict[str, Any] = {"name": name, "type": "STREAM"}
    if namespace is not None:
        estimate["namespace"] = namespace
    if row_estimate is not None:
        estimate["row_estimate"] = row_estimate
    if byte_estimate is not None:
        estimate["byte_estimate"] = byte_estimate
    return {
        "type": MessageType.TRACE,
        "trace": {"type": "ESTIMATE", "emitted_at": emitted_at_ms, "estimate": estimate},
    }


def trace_stream_status(
    stream: str, status: str, emitted_at_ms: float, namespace: str | None = None
) -> dict[str, Any]:
    return {
        "type": MessageType.TRACE,
        "trace": {
            "type": "STREAM_STATUS",
            "emitted_at": emitted_at_ms,
            "stream_status": {
                "stream_descriptor": _descriptor(stream, namespace),
                "status": status,
            },
        },
    }


def control_config(config: dict[str, Any], emitted_at_ms: float) -> dict[str, Any]:
    return {
        "type": MessageType.CONTROL,
        "control": {
            "type": "CONNECTOR_CONFIG",
            "emitted_at": emitted_at_ms,
            "connectorConfig": {"config": config},
        },
    }
