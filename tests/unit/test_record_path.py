"""The record path: what it forwards, what it counts, whichever way a connector writes a record.

Every test runs over both implementations: the C extension's chunked scan (when it is built and
not turned off with FERRYMAN_NO_EXTENSION=1) and the Python loop a wheel without it runs.
"""

from __future__ import annotations

import io
import json
import os

import msgspec
import orjson
import pytest

from ferryman.protocol.catalog import NamespaceMapping
from ferryman.workers.record_path import SCANNER, BadSourceMessage, Scanner, forward
from ferryman.workers.tracker import MessageTracker, StreamKey

IMPLEMENTATIONS = {"python": None, **({"c": SCANNER} if SCANNER is not None else {})}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def scanner(request: pytest.FixtureRequest) -> Scanner | None:
    return IMPLEMENTATIONS[request.param]


class Trickle(io.RawIOBase):
    """A pipe that hands out its bytes in pieces of the given sizes (then what is left), as a
    source's stdout does when the source writes slowly."""

    def __init__(self, data: bytes, sizes: list[int]) -> None:
        self.data, self.sizes, self.at = data, iter(sizes), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = min(len(buffer), next(self.sizes, len(buffer)), len(self.data) - self.at)
        buffer[:size] = self.data[self.at : self.at + size]
        self.at += size
        return size


def pieces(data: bytes, sizes: list[int]) -> io.BufferedReader:
    return io.BufferedReader(Trickle(data, sizes), 1 << 20)


class Handler:
    def __init__(self) -> None:
        self.states: list[bytes] = []
        self.others: list[bytes] = []
        self.garbage: list[bytes] = []
        self.unknown: list[StreamKey] = []

    def source_state(self, line: bytes) -> bytes | None:
        self.states.append(line)
        return line

    def source_message(self, line: bytes) -> None:
        self.others.append(line)

    def not_a_message(self, line: bytes) -> None:
        self.garbage.append(line)

    def unknown_stream(self, key: StreamKey) -> None:
        self.unknown.append(key)


def run(
    lines: list[bytes],
    streams: list[StreamKey],
    scanner: Scanner | None,
    mapping: NamespaceMapping | None = None,
    sizes: list[int] | None = None,
):  # type: ignore[no-untyped-def]
    tracker, handler, sink = MessageTracker(streams), Handler(), io.BytesIO()
    data = b"".join(lines)
    source = io.BytesIO(data) if sizes is None else pieces(data, sizes)
    forward(source, sink, tracker, handler, mapping or NamespaceMapping(), scanner)
    counts = {key: tuple(counter) for key, counter in tracker.emitted.items()}
    return sink.getvalue(), counts, handler


def test_compact_spaced_and_namespaced_records_all_count_and_pass_unchanged(scanner: Scanner | None) -> None:
    lines = [
        b'{"type":"RECORD","record":{"stream":"users","data":{"id":1},"emitted_at":1}}\n',
        b'{"type": "RECORD", "record": {"stream": "users", "data": {"id": 2}, "emitted_at": 1}}\n',
        b'{"type":"RECORD","record":{"namespace":"crm","stream":"users","data":{},"emitted_at":1}}\n',
        b'{"type":"RECORD","record":{"stream":"users","data":{"namespace":"x"},"namespace":"crm","emitted_at":1}}\n',
        b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"}}}}\n',
    ]
    out, counts, handler = run(lines, [("users", "crm")], scanner)
    assert out == b"".join(lines)
    assert counts == {("users", "crm"): (4, sum(len(line) for line in lines[:4]))}
    assert len(handler.states) == 1 and not handler.unknown


def test_records_with_valid_utf8_take_the_shortcut_and_invalid_utf8_fails_the_source(
    scanner: Scanner | None,
) -> None:
    valid = [
        '{"type":"RECORD","record":{"stream":"users","data":{"n":"' + text + '"},"emitted_at":1}}\n'
        for text in ("Zoë", "日本語", "\U0001f600 smile", "\u07ff\u0800\uffff\U00010000\U0010ffff")
    ]
    encoded = [line.encode() for line in valid]
    out, counts, _ = run(encoded, [("users", None)], scanner)
    assert out == b"".join(encoded) and counts == {("users", None): (4, len(out))}
    if scanner is not None:  # the whole run in one pass of the extension
        data = bytearray(b"".join(encoded))
        users = b'{"type":"RECORD","record":{"stream":"users","data":{'
        assert scanner(data, 0, len(data), {users: [0, 0]}, 1900, set()) == len(data)
    head = b'{"type":"RECORD","record":{"stream":"users","data":{"n":"'
    for bad in (
        b"\xc0\x80",  # an overlong NUL
        b"\xe0\x80\xaf",  # an overlong slash
        b"\xed\xa0\x80",  # a surrogate
        b"\xf4\x90\x80\x80",  # past U+10FFFF
        b"\xf8\x88\x80\x80\x80",  # a five-byte form
        b"\x80",  # a continuation byte alone
        b"\xe6\x97",  # a sequence cut short
    ):
        line = head + bad + b'"},"emitted_at":1}}\n'
        with pytest.raises(BadSourceMessage, match="not valid UTF-8"):
            run([line], [("users", None)], scanner)


def test_a_compact_record_that_is_not_json_is_neither_counted_nor_forwarded(scanner: Scanner | None) -> None:
    """Counted, it would be reported as synced while no destination can read it."""
    good = b'{"type":"RECORD","record":{"stream":"users","data":{"id":1},"emitted_at":1}}\n'
    broken = [
        b'{"type":"RECORD","record":{"stream":"users","data":{"id":2,},"emitted_at":1}}\n',
        b'{"type":"RECORD","record":{"stream":"users","data":{"id":02},"emitted_at":1}}\n',
        b'{"type":"RECORD","record":{"stream":"users","data":{"id":"a\tb"},"emitted_at":1}}\n',
        b'{"type":"RECORD","record":{"stream":"users","data":{"id":tru},"emitted_at":1}}\n',
        b'{"type":"RECORD","record":{"stream":"users","data":{"id":1}},"emitted_at":1}}\n',
    ]
    out, counts, handler = run([good, *broken, good], [("users", None)], scanner)
    assert out == good + good
    assert counts == {("users", None): (2, 2 * len(good))}
    assert handler.garbage == broken


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity"])
def test_a_record_holding_a_nan_fails_the_source_naming_its_stream(
    scanner: Scanner | None, value: bytes
) -> None:
    """What Python's json.dumps writes for such floats (older CDKs, pandas). Before, it was logged
    as a line of text, data and all, and skipped: the sync succeeded with the record missing."""
    good = b'{"type":"RECORD","record":{"stream":"users","data":{"id":1},"emitted_at":1}}\n'
    for bad in (
        b'{"type":"RECORD","record":{"stream":"users","data":{"x":' + value + b'},"emitted_at":1}}\n',
        b'{"type": "RECORD", "record": {"stream": "users", "data": {"x": [' + value + b"]}}}\n",
    ):
        tracker, sink = MessageTracker([("users", None)]), io.BytesIO()
        why = f"the source sent a RECORD of stream 'users' that is not valid JSON: {value.decode()} is not"
        with pytest.raises(BadSourceMessage, match=why):
            forward(io.BytesIO(good + bad + good), sink, tracker, Handler(), NamespaceMapping(), scanner)
        assert sink.getvalue() == good
        assert tracker.emitted[("users", None)] == [1, len(good)]


def test_a_state_holding_a_nan_or_a_lone_surrogate_fails_the_source(scanner: Scanner | None) -> None:
    """Before, both were logged as text and skipped: the sync succeeded with the checkpoint missing."""
    head = b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},'
    for cursor, why in ((b"NaN", "is not valid JSON"), (b'"\\ud800"', "cannot be stored")):
        handler = Handler()
        with pytest.raises(BadSourceMessage, match=f"a STATE of stream 'users' that {why}"):
            forward(io.BytesIO(head + b'"stream_state":{"cursor":' + cursor + b"}}}}\n"), io.BytesIO(),
                    MessageTracker([("users", None)]), handler, NamespaceMapping(), scanner)  # fmt: skip
        assert handler.states == [] and handler.garbage == []


def test_records_with_lone_surrogates_are_forwarded_and_counted_whichever_way_they_are_written(
    scanner: Scanner | None,
) -> None:
    """JSON by the grammar, read by Python's json and Jackson. The extension's shortcut took a
    short compact one; before, the Python loop, a long one and a spaced one were logged and
    skipped while the sync succeeded."""
    lines = [
        b'{"type":"RECORD","record":{"stream":"users","data":{"s":"\\ud800"},"emitted_at":1}}\n',
        b'{"type": "RECORD", "record": {"stream": "users", "data": {"s": "\\udc00\\ud800"}}}\n',
        b'{"type":"RECORD","record":{"stream":"users","data":{"s":"\\ud800","p":"' + b"p" * 3000 + b'"}}}\n',
        b'{"type":"RECORD","record":{"stream":"users","data":{"\\udfff":1},"emitted_at":1}}',  # no newline
    ]
    out, counts, handler = run(lines, [("users", None)], scanner)
    assert out == b"".join(lines) + b"\n"
    assert counts == {("users", None): (4, sum(map(len, lines)) + 1)}
    assert handler.garbage == []


def test_a_record_with_a_lone_surrogate_keeps_it_when_renamed(scanner: Scanner | None) -> None:
    line = b'{"type":"RECORD","record":{"namespace":"crm","stream":"users","data":{"s":"\\ud800\xc3\xa9"}}}\n'
    out, counts, _ = run([line], [("users", "crm")], scanner, NamespaceMapping(prefix="raw_"))
    record = json.loads(out)["record"]
    assert record == {"stream": "raw_users", "namespace": "crm", "data": {"s": "\ud800\u00e9"}}
    assert counts == {("users", "crm"): (1, len(line))}


def test_a_record_holding_a_nan_in_a_line_nobody_reads_as_a_record_is_only_logged(
    scanner: Scanner | None,
) -> None:
    """Text and other messages stay as they were: logged (by the handler) and skipped."""
    lines = [
        b'NaN {"type":"RECORD","record":{"stream":"users","data":{"x":NaN}}}\n',
        b'{"type":"LOG","log":{"level":"INFO","message":"x","n":NaN}}\n',
        b'{"type":"RECORD","record":{"stream":"users","data":{"x":NaN},\n',  # not JSON even so
    ]
    out, counts, handler = run(lines, [("users", None)], scanner)
    assert out == b"" and handler.garbage == lines
    assert counts == {("users", None): (0, 0)}


def test_same_name_in_two_namespaces_is_counted_per_namespace(scanner: Scanner | None) -> None:
    a = b'{"type":"RECORD","record":{"stream":"users","namespace":"a","data":{},"emitted_at":1}}\n'
    b = b'{"type":"RECORD","record":{"stream":"users","data":{},"emitted_at":1,"namespace":"b"}}\n'
    _, counts, _ = run([a, b, b], [("users", "a"), ("users", "b")], scanner)
    assert counts == {("users", "a"): (1, len(a)), ("users", "b"): (2, 2 * len(b))}


def test_escaped_names_and_lookalike_prefixes_are_not_misread(scanner: Scanner | None) -> None:
    name = 'we"ird'
    record = orjson.dumps({"type": "RECORD", "record": {"stream": name, "data": {}, "emitted_at": 1}}) + b"\n"
    _, counts, _ = run([record], [(name, None), ("we", None)], scanner)
    assert counts == {(name, None): (1, len(record)), ("we", None): (0, 0)}


def test_unconfigured_streams_garbage_and_other_messages_never_reach_the_destination(
    scanner: Scanner | None,
) -> None:
    keep = b'{"type":"RECORD","record":{"stream":"users","data":{},"emitted_at":1}}\n'
    lines = [
        b'{"type":"RECORD","record":{"stream":"secrets","data":{},"emitted_at":1}}\n',
        b"\xff\xfe not json\n",
        b'{"type":"LOG","log":{"level":"INFO","message":"hi"}}\n',
        keep,
        b'{"type":"RECORD","record":{"stream":"users"',  # cut short by a crash, no newline
    ]
    out, counts, handler = run(lines, [("users", None)], scanner)
    assert out == keep
    assert handler.unknown == [("secrets", None)]
    assert handler.garbage == [lines[1], lines[4]]
    assert handler.others == [lines[2]]
    assert counts[("users", None)] == (1, len(keep))


def test_mapping_renames_records_for_the_destination_only(scanner: Scanner | None) -> None:
    line = b'{"type":"RECORD","record":{"stream":"users","data":{"id":1},"emitted_at":1}}\n'
    out, counts, _ = run([line], [("users", None)], scanner, NamespaceMapping(prefix="raw_"))
    assert orjson.loads(out)["record"]["stream"] == "raw_users"
    assert counts == {("users", None): (1, len(line))}


def test_a_renamed_record_keeps_its_data_byte_for_byte(scanner: Scanner | None) -> None:
    """Under a prefix, only the names are rewritten. Before, the whole record was decoded and
    encoded again with orjson: a 30-digit id became 1.2345678901234568e+29 (a float, its digits
    lost), a number past a double's range failed the sync, 5.000 came out as 5.0."""
    data = b'{"id":123456789012345678901234567890,"big":1.5e400,"ratio":5.000,"name":"\\u00e9"}'
    head = b'{"type":"RECORD","record":{"namespace":"crm","stream":"users","data":'
    line = head + data + b',"emitted_at":1}}\n'
    out, counts, _ = run([line], [("users", "crm")], scanner, NamespaceMapping(prefix="raw_"))
    assert data in out
    fields = msgspec.json.Decoder(dict[str, msgspec.Raw])
    record = {key: bytes(value) for key, value in fields.decode(fields.decode(out)["record"]).items()}
    assert record == {"stream": b'"raw_users"', "namespace": b'"crm"', "data": data, "emitted_at": b"1"}
    assert counts == {("users", "crm"): (1, len(line))}


def test_a_last_line_without_newline_is_still_framed_for_the_destination(scanner: Scanner | None) -> None:
    line = b'{"type":"RECORD","record":{"stream":"users","data":{},"emitted_at":1}}'
    out, counts, _ = run([line], [("users", None)], scanner)
    assert out == line + b"\n"
    assert counts[("users", None)][0] == 1


def _record(stream: str, n: int) -> bytes:
    return b'{"type":"RECORD","record":{"stream":"%s","data":{"id":%d},"emitted_at":1}}\n' % (
        stream.encode(),
        n,
    )


class CountingHandler(Handler):
    """Notes the counts as they stand at each STATE: what the tracker sets aside for that state."""

    def __init__(self, tracker: MessageTracker) -> None:
        super().__init__()
        self.tracker = tracker
        self.counts_at_state: list[dict[StreamKey, int]] = []

    def source_state(self, line: bytes) -> bytes | None:
        self.counts_at_state.append({key: c[0] for key, c in self.tracker.emitted.items()})
        return super().source_state(line)


@pytest.mark.parametrize("sizes", [[1] * 2000, [7, 1000, 3, 64, 5000], [], [333] * 100])
def test_lines_cut_anywhere_by_reads_arrive_whole_in_order_with_counts_at_each_state(
    scanner: Scanner | None, sizes: list[int]
) -> None:
    state = b'{"type":"STATE","state":{"type":"LEGACY","data":{"n":1}}}\n'
    lines = [_record("users", n) for n in range(5)] + [state] + [_record("orders", n) for n in range(3)]
    lines += [_record("users", 9), b"not json\n", _record("users", 10), state, _record("orders", 3)]
    streams: list[StreamKey] = [("users", None), ("orders", None)]
    tracker, sink = MessageTracker(streams), io.BytesIO()
    handler = CountingHandler(tracker)
    forward(pieces(b"".join(lines), sizes), sink, tracker, handler, NamespaceMapping(), scanner)
    assert sink.getvalue() == b"".join(line for line in lines if line != b"not json\n")
    assert handler.counts_at_state == [
        {("users", None): 5, ("orders", None): 0},
        {("users", None): 7, ("orders", None): 3},
    ]
    assert tracker.emitted[("orders", None)] == [4, sum(len(_record("orders", n)) for n in range(4))]
    assert handler.garbage == [b"not json\n"]


def test_a_record_longer_than_the_read_buffer_arrives_whole_and_so_do_those_after_it(
    scanner: Scanner | None,
) -> None:
    huge = b'{"type":"RECORD","record":{"stream":"users","data":{"p":"' + b"x" * (5 << 20) + b'"}}}\n'
    lines = [_record("users", 1), huge, *(_record("users", n) for n in range(2, 3000))]
    out, counts, _ = run(lines, [("users", None)], scanner, sizes=[1 << 20] * 10 + [4096] * 100)
    assert out == b"".join(lines)
    assert counts == {("users", None): (len(lines), len(out))}


def test_the_extension_is_built_in_ci() -> None:
    """CI installs with a C compiler: the fast path must be there (a build that silently lost it
    would cost every sync about three times the worker CPU)."""
    if os.environ.get("CI") != "true" or os.environ.get("FERRYMAN_NO_EXTENSION", "") not in ("", "0"):
        pytest.skip("only CI promises a C compiler")
    assert SCANNER is not None


class StreamWalks(dict[StreamKey, list[int]]):
    """The tracker's counters, counting how many streams are visited by walks over all of them."""

    visits = 0

    def _walked(self, items):  # type: ignore[no-untyped-def]
        for item in items:
            self.visits += 1
            yield item

    def __iter__(self):  # type: ignore[no-untyped-def]
        return self._walked(super().__iter__())

    def items(self):  # type: ignore[no-untyped-def]
        return self._walked(super().items())

    def values(self):  # type: ignore[no-untyped-def]
        return self._walked(super().values())


def test_a_state_and_the_heartbeat_look_at_the_streams_that_moved_not_at_every_stream(
    scanner: Scanner | None,
) -> None:
    """A source of many streams sends a STATE per stream at least: walking every stream's counts
    on each (and on each heartbeat check) made a sync quadratic in the streams."""
    streams: list[StreamKey] = [(f"table_{n}", None) for n in range(400)]
    tracker = MessageTracker(streams)
    tracker.emitted = walks = StreamWalks(tracker.emitted)
    heartbeats: list[int] = []

    class Tracking(Handler):
        def source_state(self, line: bytes) -> bytes | None:
            tracker.source_state(json.loads(line)["state"])
            heartbeats.append(tracker.messages_seen())
            return super().source_state(line)

    lines, sent = [], 0
    for n, (name, _) in enumerate(streams):
        for _ in range(n % 3 + 1):  # 1 to 3 records, in one run
            body = {"stream": name, "data": {"n": n}, "emitted_at": 1}
            lines.append(orjson.dumps({"type": "RECORD", "record": body}) + b"\n")
        state = {"type": "STREAM", "stream": {"stream_descriptor": {"name": name}, "stream_state": {"n": n}}}
        lines.append(json.dumps({"type": "STATE", "state": state}).encode() + b"\n")
        sent += n % 3 + 1
        if n % 50 == 49:  # a state naming a stream that moved long ago: no records since
            lines.append(lines[-1])
    forward(io.BytesIO(b"".join(lines)), io.BytesIO(), tracker, Tracking(), NamespaceMapping(), scanner)

    # Once over the streams to set up (the shortcut's heads), not once per STATE.
    assert walks.visits <= 2 * len(streams)
    assert heartbeats[-1] == sent + len(heartbeats)
    assert heartbeats == sorted(heartbeats)
    for line in lines:  # the destination confirms every state: each stream's records are committed
        if line.startswith(b'{"type": "STATE"'):
            tracker.destination_state(json.loads(line)["state"])
    committed = {(s.name, s.namespace): (s.records_committed, s.bytes_committed) for s in tracker.snapshot()}
    assert committed == {key: tuple(counter) for key, counter in dict.items(walks)}
    assert committed[("table_2", None)][0] == 3
