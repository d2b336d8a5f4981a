"""Fuzzing the record path and the protocol decoders with arbitrary bytes, nesting and sizes.

Whatever a source writes, ``forward`` either returns or raises BadSourceMessage (never anything
else), forwards nothing it did not count, and forwards each counted RECORD byte for byte; the
decoders never raise. The handler is the unit's own callback interface, not a connector.
"""

from __future__ import annotations

import io

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.protocol.catalog import NamespaceMapping
from ferryman.protocol.codec import decode_envelope, message_type, parse_message, peek_head
from ferryman.workers.record_path import BadSourceMessage, Scanner, forward
from ferryman.workers.tracker import MessageTracker, StreamKey
from tests.unit.test_record_path import IMPLEMENTATIONS, Handler, pieces

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STREAMS: list[StreamKey] = [("users", None), ("orders", "shop")]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@st.composite
def deep_lines(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=500, max_value=20_000))
    head = draw(
        st.sampled_from(
            [
                b'{"type":"LOG","log":{"level":"INFO","message":"x"},"x":',
                b'{"type":"RECORD","record":{"stream":"users","data":{"a":',
                b'{"type":"STATE","state":{"type":"LEGACY","data":',
                b"",
            ]
        )
    )
    closed = draw(st.booleans())
    return head + b"[" * depth + (b"]" * depth + b"}}}" if closed else b"")


@st.composite
def records(draw: st.DrawFn) -> bytes:
    stream = draw(st.sampled_from(["users", "orders", "other"]))
    record: dict[str, object] = {"stream": stream, "data": draw(json_values), "emitted_at": 1}
    if draw(st.booleans()):
        record["namespace"] = draw(st.sampled_from(["shop", "x"]))
    return orjson.dumps({"type": "RECORD", "record": record})


lines = st.one_of(
    records(),
    st.builds(lambda v: orjson.dumps({"type": "STATE", "state": v}), json_values),
    st.builds(lambda v: orjson.dumps({"type": "LOG", "log": v}), json_values),
    st.builds(orjson.dumps, json_values),
    st.binary(max_size=200),
    deep_lines(),
    st.builds(
        lambda n: b'{"type":"RECORD","record":{"stream":"users","data":{"p":"' + b"x" * n + b'"}}}',
        st.integers(0, 300_000),
    ),
)


def _is_forwardable(line: bytes) -> bool:
    """What the destination may receive: one JSON object per line, valid UTF-8, data an object.

    Read with msgspec rather than orjson: hypothesis raises the recursion limit while a test
    runs, and with it the depth msgspec (the worker's decoder) accepts, past orjson's 1,024."""
    line.decode()
    message = msgspec.json.decode(line)
    return message["type"] == "STATE" or isinstance(message["record"]["data"], dict)


@pytest.mark.parametrize("scanner", IMPLEMENTATIONS.values(), ids=IMPLEMENTATIONS.keys())
@FUZZ
@given(st.lists(lines, max_size=12), st.booleans(), st.lists(st.integers(1, 70_000), max_size=8))
def test_forward_returns_or_blames_the_source_and_forwards_only_what_it_counted(
    scanner: Scanner | None, chunks: list[bytes], last_newline: bool, sizes: list[int]
) -> None:
    """Over both implementations, the source's bytes read in pieces cut anywhere."""
    source = b"\n".join(chunks) + (b"\n" if last_newline else b"")
    tracker, handler, sink = MessageTracker(STREAMS), Handler(), io.BytesIO()
    try:
        forward(pieces(source, sizes), sink, tracker, handler, NamespaceMapping(), scanner)
    except BadSourceMessage as exc:
        assert "\\x" not in str(exc)
    out = sink.getvalue().splitlines(keepends=True)
    counted = sum(counter[0] for counter in tracker.emitted.values())
    forwarded_records = [line for line in out if line not in handler.states]
    assert len(forwarded_records) == counted
    assert sum(counter[1] for counter in tracker.emitted.values()) == sum(map(len, forwarded_records))
    for line in out:
        assert _is_forwardable(line)


@FUZZ
@given(st.one_of(st.binary(max_size=300), deep_lines(), lines))
def test_the_decoders_never_raise(line: bytes) -> None:
    decode_envelope(line)
    parse_message(line)
    message_type(line)
    peek_head(line)


def _decodes(line: bytes) -> bool:
    """What the envelope decode would take: valid UTF-8 and JSON syntax (msgspec; ``data`` is
    kept raw there, so a number past a double's range is syntax, not an error)."""
    try:
        line.decode()
        msgspec.json.decode(line, type=msgspec.Raw)
    except (UnicodeDecodeError, msgspec.DecodeError):
        return False
    return True


SHORTCUT_HEAD = b'{"type":"RECORD","record":{"stream":"users","data":{'
json_soup = st.text(alphabet='{}[]:,"\\/0123456789.eE+-trufalsn \t\x01bué日', max_size=40).map(str.encode)


@pytest.mark.skipif("c" not in IMPLEMENTATIONS, reason="the C extension is not built here")
@FUZZ
@given(
    (st.binary(max_size=64) | st.text(max_size=32).map(str.encode)).filter(lambda b: b"\n" not in b),
    json_soup,
)
def test_the_extension_takes_a_record_exactly_when_the_envelope_decode_would(
    payload: bytes, soup: bytes
) -> None:
    """Differential: a shortcut line must be one the decoders take (UTF-8, JSON), and the other
    way round for compact lines; random bytes in a string, and random JSON-ish tokens."""
    for line in (
        SHORTCUT_HEAD + b'"p":"' + payload + b'"},"emitted_at":1}}\n',
        SHORTCUT_HEAD + b'"p":' + soup + b'},"emitted_at":1}}\n',
    ):
        buffer = bytearray(line)
        stop = IMPLEMENTATIONS["c"](buffer, 0, len(buffer), {SHORTCUT_HEAD: [0, 0]}, 1900)  # type: ignore[misc]
        assert stop == (len(line) if _decodes(line[:-1]) else 0), line
