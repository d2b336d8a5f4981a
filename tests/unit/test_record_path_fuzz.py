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
    # Every stream counted was noted as moved: a STATE now sets aside all that was counted.
    tracker.source_state({"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}}})
    tracker.destination_state({"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}}})
    assert [(s.records_committed, s.bytes_committed) for s in tracker.snapshot()] == [
        tuple(counter) for counter in tracker.emitted.values()
    ]


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
        stop = IMPLEMENTATIONS["c"](buffer, 0, len(buffer), {SHORTCUT_HEAD: [0, 0]}, 1900, set())  # type: ignore[misc]
        assert stop == (len(line) if _decodes(line[:-1]) else 0), line


COMPACT = b'{"type":"RECORD","record":{"stream":"'
AFTER_NAME = b'","data":{'
# A stream whose name holds a newline: no catalog makes that a shortcut head, but the scan must
# not read a head across the end of a line even if one were.
NEWLINE_NAME_HEAD = COMPACT + b"us\nrs" + AFTER_NAME


def _heads() -> dict[bytes, list[int]]:
    return {SHORTCUT_HEAD: [0, 0], NEWLINE_NAME_HEAD: [0, 0]}


def _reference_scan(data: bytes, heads: dict[bytes, list[int]], max_bytes: int) -> int:
    """What scan_records promises, line by line: each line's newline found first, then its head,
    length, ending and JSON checked (the Python loop's shortcut, with msgspec as the judge)."""
    pos = 0
    while (newline := data.find(b"\n", pos)) >= 0:
        line = data[pos : newline + 1]
        quote = line.find(b'"', len(COMPACT))
        if not (
            line.startswith(COMPACT)
            and quote >= 0
            and line[: quote + len(AFTER_NAME)] in heads
            and len(line) < max_bytes
            and line.endswith(b"}\n")
            and _decodes(line[:-1])
        ):
            break
        pos = newline + 1
    return pos


def _scan(data: bytes, max_bytes: int = 1900) -> int:
    heads, moved = _heads(), set()
    stop: int = IMPLEMENTATIONS["c"](bytearray(data), 0, len(data), heads, max_bytes, moved)  # type: ignore[misc]
    assert sum(counter[1] for counter in heads.values()) == stop
    assert moved == {id(counter) for counter in heads.values() if counter[0]}
    return stop


# Bytes that end a run of plain ASCII in a string, and their neighbours: the quote, backslashes
# (valid and not), control bytes, a raw newline, the edges of ASCII, UTF-8 whole and broken.
STRING_STOPS = [b'"', b"\\", b'\\"', b"\\u00e9", b"\\x", b"\x00", b"\x1f", b"\n", b" ", b"\x7f"]
STRING_STOPS += [b"\x80", b"\xff", "é".encode(), "日".encode(), "😀".encode(), "é".encode()[:1]]
RECORD_TAILS = [b'"},"emitted_at":1}}\n', b'"}}}\n']


@pytest.mark.skipif("c" not in IMPLEMENTATIONS, reason="the C extension is not built here")
@pytest.mark.parametrize("length", [15, 16, 17, 31, 32, 33, 63, 64, 65])
def test_the_extension_checks_every_byte_of_a_string_whatever_its_length_and_place(length: int) -> None:
    """The scan looks at strings 16, 32 (AVX2) and 1 byte at a time, depending on the CPU and on
    how many bytes are left in the buffer or under max_bytes: a string of each length around those
    steps, with each stop byte at each offset, must be taken exactly when the decoders take it,
    as the last line of the buffer (no bytes after it to read ahead) or before another record."""
    valid = SHORTCUT_HEAD + b'"id":1},"emitted_at":1}}\n'
    for stop in STRING_STOPS:
        for offset in range(length):
            payload = (b"a" * offset + stop + b"b" * length)[:length]
            for tail in RECORD_TAILS:
                line = SHORTCUT_HEAD + b'"p":"' + payload + tail
                taken = _decodes(line[:-1])
                assert _scan(line) == (len(line) if taken else 0), line
                both = line + valid
                assert _scan(both) == (len(both) if taken else 0), line
                assert _scan(both, max_bytes=len(line) + 1) == (len(both) if taken else 0), line
                assert _scan(both, max_bytes=len(line)) == 0, line


record_lines = st.one_of(
    st.builds(
        lambda payload, tail: SHORTCUT_HEAD + b'"p":"' + payload + tail,
        st.binary(max_size=80) | st.text(max_size=40).map(str.encode),
        st.sampled_from(RECORD_TAILS),
    ),
    st.builds(lambda soup: SHORTCUT_HEAD + b'"p":' + soup + b"}}}\n", json_soup),
    st.sampled_from(
        [
            NEWLINE_NAME_HEAD + b"}}}\n",
            SHORTCUT_HEAD + b'"a":\n1}}}\n',  # a newline where whitespace may be
            SHORTCUT_HEAD + b"}}}\r\n",
            SHORTCUT_HEAD[:-3] + b"\n",  # shorter than the head
            b"\n",
        ]
    ),
    lines.map(lambda line: line + b"\n"),
)


@pytest.mark.skipif("c" not in IMPLEMENTATIONS, reason="the C extension is not built here")
@FUZZ
@given(st.lists(record_lines, max_size=6), st.just(0) | st.integers(1, 400), st.integers(-1, 2100))
def test_the_extension_stops_where_a_line_by_line_check_would(
    chunks: list[bytes], cut: int, max_bytes: int
) -> None:
    """Differential, over whole buffers: the scan finds each line's end in the same pass as its
    JSON, and must stop exactly where cutting the lines first and checking each would, at a line
    too long, an unfinished one at the buffer's end, one shorter than the head, or a newline inside
    a line's name or JSON."""
    data = b"".join(chunks)
    data = data[: max(0, len(data) - cut)]
    assert _scan(data, max_bytes) == _reference_scan(data, _heads(), max_bytes)
