"""What we parse and what we emit, checked against the official protocol models."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from airbyte_protocol import models as official

from ferryman.protocol import codec, messages
from ferryman.protocol.codec import decode_envelope, encode, parse_message

NOW = 1_700_000_000_000


def _official_lines() -> list[tuple[str, official.AirbyteMessage]]:
    m = official
    descriptor = m.StreamDescriptor(name="users", namespace="public")
    samples: list[tuple[str, m.AirbyteMessage]] = [
        (
            "record",
            m.AirbyteMessage(
                type=m.Type.RECORD,
                record=m.AirbyteRecordMessage(
                    stream="users",
                    namespace="public",
                    data={"id": 1, "nested": {"a": [1, 2]}},
                    emitted_at=NOW,
                ),
            ),
        ),
        (
            "state-stream",
            m.AirbyteMessage(
                type=m.Type.STATE,
                state=m.AirbyteStateMessage(
                    type=m.AirbyteStateType.STREAM,
                    stream=m.AirbyteStreamState(
                        stream_descriptor=descriptor, stream_state=m.AirbyteStateBlob(cursor=5)
                    ),
                ),
            ),
        ),
        (
            "state-global",
            m.AirbyteMessage(
                type=m.Type.STATE,
                state=m.AirbyteStateMessage(
                    type=m.AirbyteStateType.GLOBAL,
                    global_=m.AirbyteGlobalState(
                        shared_state=m.AirbyteStateBlob(lsn=9),
                        stream_states=[
                            m.AirbyteStreamState(
                                stream_descriptor=descriptor, stream_state=m.AirbyteStateBlob(c=1)
                            )
                        ],
                    ),
                ),
            ),
        ),
        (
            "state-legacy",
            m.AirbyteMessage(
                type=m.Type.STATE,
                state=m.AirbyteStateMessage(type=m.AirbyteStateType.LEGACY, data={"users": {"cursor": 3}}),
            ),
        ),
        (
            "log",
            m.AirbyteMessage(type=m.Type.LOG, log=m.AirbyteLogMessage(level=m.Level.WARN, message="careful")),
        ),
        (
            "spec",
            m.AirbyteMessage(
                type=m.Type.SPEC, spec=m.ConnectorSpecification(connectionSpecification={"type": "object"})
            ),
        ),
        (
            "status",
            m.AirbyteMessage(
                type=m.Type.CONNECTION_STATUS,
                connectionStatus=m.AirbyteConnectionStatus(status=m.Status.FAILED, message="bad password"),
            ),
        ),
        (
            "catalog",
            m.AirbyteMessage(
                type=m.Type.CATALOG,
                catalog=m.AirbyteCatalog(
                    streams=[
                        m.AirbyteStream(
                            name="users", json_schema={}, supported_sync_modes=[m.SyncMode.full_refresh]
                        )
                    ]
                ),
            ),
        ),
        (
            "trace-error",
            m.AirbyteMessage(
                type=m.Type.TRACE,
                trace=m.AirbyteTraceMessage(
                    type=m.TraceType.ERROR,
                    emitted_at=NOW,
                    error=m.AirbyteErrorTraceMessage(
                        message="no access", failure_type=m.FailureType.config_error
                    ),
                ),
            ),
        ),
        (
            "trace-estimate",
            m.AirbyteMessage(
                type=m.Type.TRACE,
                trace=m.AirbyteTraceMessage(
                    type=m.TraceType.ESTIMATE,
                    emitted_at=NOW,
                    estimate=m.AirbyteEstimateTraceMessage(
                        name="users", type=m.EstimateType.STREAM, row_estimate=10
                    ),
                ),
            ),
        ),
        (
            "trace-stream-status",
            m.AirbyteMessage(
                type=m.Type.TRACE,
                trace=m.AirbyteTraceMessage(
                    type=m.TraceType.STREAM_STATUS,
                    emitted_at=NOW,
                    stream_status=m.AirbyteStreamStatusTraceMessage(
                        stream_descriptor=descriptor, status=m.AirbyteStreamStatus.RUNNING
                    ),
                ),
            ),
        ),
        (
            "trace-analytics",
            m.AirbyteMessage(
                type=m.Type.TRACE,
                trace=m.AirbyteTraceMessage(
                    type=m.TraceType.ANALYTICS,
                    emitted_at=NOW,
                    analytics=m.AirbyteAnalyticsTraceMessage(type="cdk", value="1"),
                ),
            ),
        ),
        (
            "control",
            m.AirbyteMessage(
                type=m.Type.CONTROL,
                control=m.AirbyteControlMessage(
                    type=m.OrchestratorType.CONNECTOR_CONFIG,
                    emitted_at=NOW,
                    connectorConfig=m.AirbyteControlConnectorConfigMessage(config={"token": "new"}),
                ),
            ),
        ),
    ]
    return samples


@pytest.mark.parametrize(
    ("name", "message"), _official_lines(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_official_message_type_is_read(name: str, message: official.AirbyteMessage) -> None:
    line = message.model_dump_json(exclude_none=True, by_alias=True).encode() + b"\n"
    envelope = decode_envelope(line)
    assert envelope is not None
    assert envelope.type == message.type.value
    if message.record is not None:
        assert envelope.record is not None
        assert (envelope.record.stream, envelope.record.namespace) == ("users", "public")
    parsed = parse_message(line)
    assert parsed == orjson.loads(line)


def test_non_protocol_lines_are_recognised_as_such() -> None:
    for line in (b"plain text\n", b"\xff\xfe garbage\n", b"[1, 2]\n", b'{"no_type": 1}\n', b"{not json\n"):
        assert parse_message(line) is None
    assert decode_envelope(b'{"type":"RECORD","record":{"data":{}}}\n') is None  # no stream


def _emitted() -> list[dict[str, Any]]:
    return [
        messages.record("users", {"id": 1}, NOW),
        messages.record("users", {"id": 1}, NOW, namespace="public"),
        messages.stream_state("users", {"id": 1}),
        messages.stream_state("users", None, namespace="public", record_count=10.0),
        messages.global_state({"lsn": 1}, [("users", None, {"id": 1}), ("orders", "public", None)]),
        messages.legacy_state({"users": {"id": 1}}),
        messages.log("INFO", "hello"),
        messages.log("ERROR", "boom", stack_trace="Traceback ..."),
        messages.spec({"type": "object", "properties": {}}, supportsIncremental=True),
        messages.connection_status(True),
        messages.connection_status(False, "bad config"),
        messages.catalog([{"name": "users", "json_schema": {}, "supported_sync_modes": ["full_refresh"]}]),
        messages.trace_error("boom", NOW, "config_error", internal_message="x", stack_trace="y"),
        messages.trace_estimate("users", NOW, row_estimate=5, byte_estimate=50),
        messages.trace_stream_status("users", "COMPLETE", NOW),
        messages.control_config({"a": 1}, NOW),
    ]


@pytest.mark.parametrize("message", _emitted(), ids=lambda m: m["type"])
def test_every_message_we_emit_is_valid_for_the_official_schema(message: dict[str, Any]) -> None:
    line = encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    model = official.AirbyteMessage.model_validate_json(line)
    assert model.type.value == message["type"]
    # Nothing we set was dropped or renamed by the official model (it may add its defaults).
    dumped = orjson.loads(model.model_dump_json(exclude_none=True, by_alias=True))
    assert _contains(dumped, _without_none(orjson.loads(line)))


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _contains(whole: Any, part: Any) -> bool:
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and _contains(whole[k], v) for k, v in part.items())
    if isinstance(part, list):
        return isinstance(whole, list) and len(whole) == len(part) and all(map(_contains, whole, part))
    return bool(whole == part)


@pytest.mark.parametrize(
    "option",
    [
        0,
        orjson.OPT_INDENT_2,
        orjson.OPT_SORT_KEYS,
        orjson.OPT_APPEND_NEWLINE,
        orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
    ],
)
def test_integers_past_64_bits_keep_every_digit_in_the_layout_orjson_would_give(option: int) -> None:
    document = {"z": [1, {"é": "x"}, []], "a": {}, "cursor": 2**64}
    small = {**document, "cursor": 7}
    written = codec.dumps(document, option)
    assert written == orjson.dumps(small, option=option).replace(b"7", str(2**64).encode())
    assert codec.loads(written) == document and type(codec.loads(written)["cursor"]) is int
    assert (
        codec.loads(b'{"cursor": -123456789012345678901234567890}')["cursor"]
        == -123456789012345678901234567890
    )
    assert codec.loads(b'{"id": "12345678901234567890123", "f": 0.5}') == {
        "id": "12345678901234567890123",
        "f": 0.5,
    }
    with pytest.raises(TypeError):
        codec.dumps({"x": object()})  # what orjson refuses for another reason still fails


def test_a_state_too_deep_is_found_with_its_line_and_a_shallow_one_skips_the_walk() -> None:
    from ferryman.protocol.depth import MAX_DEPTH, may_nest_deeper_than
    from ferryman.protocol.state import state_problem

    deep: Any = {"cursor": 1}
    for _ in range(MAX_DEPTH):
        deep = {"x": deep}
    state = {"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": deep}}
    line = orjson.dumps({"type": "STATE", "state": state})
    problem = state_problem(state, None, raw=line)
    assert problem is not None and "'users' nested more than 200 levels" in problem
    shallow = {
        "type": "STREAM",
        "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"c": "[[[{{{"}},
    }
    assert state_problem(shallow, None, raw=orjson.dumps(shallow)) is None
    assert may_nest_deeper_than(b"[" * 201) and not may_nest_deeper_than(b'{"a": [1, {"b": 2}]}')


@pytest.mark.parametrize(
    ("text", "deeper"),
    [
        (b"[" * 200 + b"]" * 200, False),
        (b"[" * 201 + b"]" * 201, True),
        (b'{"a":' * 201 + b"1" + b"}" * 201, True),
        (b"[" * 5000, True),  # no JSON, but its brackets tell
        (orjson.dumps([[1]] * 10_000), False),  # many brackets, side by side
        (orjson.dumps({"note": "[{" * 5000}), False),  # inside a string, nothing nests
        (orjson.dumps({'a"[': ['\\"' + "[" * 300]}), False),  # escaped quotes end no string
    ],
)
def test_how_deep_json_text_nests_is_told_by_its_brackets_outside_strings(text: bytes, deeper: bool) -> None:
    from ferryman.protocol.depth import text_nests_deeper_than

    assert text_nests_deeper_than(text, 200) is deeper
