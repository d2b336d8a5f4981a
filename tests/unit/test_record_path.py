"""The record path: what it forwards, what it counts, whichever way a connector writes a record."""

from __future__ import annotations

import io

import orjson

from ferryman.protocol.catalog import NamespaceMapping
from ferryman.workers.record_path import forward
from ferryman.workers.tracker import MessageTracker, StreamKey


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


def run(lines: list[bytes], streams: list[StreamKey], mapping: NamespaceMapping | None = None):  # type: ignore[no-untyped-def]
    tracker, handler, sink = MessageTracker(streams), Handler(), io.BytesIO()
    forward(io.BytesIO(b"".join(lines)), sink, tracker, handler, mapping or NamespaceMapping())
    counts = {key: tuple(counter) for key, counter in tracker.emitted.items()}
    return sink.getvalue(), counts, handler


def test_compact_spaced_and_namespaced_records_all_count_and_pass_unchanged() -> None:
    lines = [
        b'{"type":"RECORD","record":{"stream":"users","data":{"id":1},"emitted_at":1}}\n',
        b'{"type": "RECORD", "record": {"stream": "users", "data": {"id": 2}, "emitted_at": 1}}\n',
        b'{"type":"RECORD","record":{"namespace":"crm","stream":"users","data":{},"emitted_at":1}}\n',
        b'{"type":"RECORD","record":{"stream":"users","data":{"namespace":"x"},"namespace":"crm","emitted_at":1}}\n',
        b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"}}}}\n',
    ]
    out, counts, handler = run(lines, [("users", "crm")])
    assert out == b"".join(lines)
    assert counts == {("users", "crm"): (4, sum(len(line) for line in lines[:4]))}
    assert len(handler.states) == 1 and not handler.unknown


def test_same_name_in_two_namespaces_is_counted_per_namespace() -> None:
    a = b'{"type":"RECORD","record":{"stream":"users","namespace":"a","data":{},"emitted_at":1}}\n'
    b = b'{"type":"RECORD","record":{"stream":"users","data":{},"emitted_at":1,"namespace":"b"}}\n'
    _, counts, _ = run([a, b, b], [("users", "a"), ("users", "b")])
    assert counts == {("users", "a"): (1, len(a)), ("users", "b"): (2, 2 * len(b))}


def test_escaped_names_and_lookalike_prefixes_are_not_misread() -> None:
    name = 'we"ird'
    record = orjson.dumps({"type": "RECORD", "record": {"stream": name, "data": {}, "emitted_at": 1}}) + b"\n"
    _, counts, _ = run([record], [(name, None), ("we", None)])
    assert counts == {(name, None): (1, len(record)), ("we", None): (0, 0)}


def test_unconfigured_streams_garbage_and_other_messages_never_reach_the_destination() -> None:
    keep = b'{"type":"RECORD","record":{"stream":"users","data":{},"emitted_at":1}}\n'
    lines = [
        b'{"type":"RECORD","record":{"stream":"secrets","data":{},"emitted_at":1}}\n',
        b"\xff\xfe not json\n",
        b'{"type":"LOG","log":{"level":"INFO","message":"hi"}}\n',
        keep,
        b'{"type":"RECORD","record":{"stream":"users"',  # cut short by a crash, no newline
    ]
    out, counts, handler = run(lines, [("users", None)])
    assert out == keep
    assert handler.unknown == [("secrets", None)]
    assert handler.garbage == [lines[1], lines[4]]
    assert handler.others == [lines[2]]
    assert counts[("users", None)] == (1, len(keep))


def test_mapping_renames_records_for_the_destination_only() -> None:
    line = b'{"type":"RECORD","record":{"stream":"users","data":{"id":1},"emitted_at":1}}\n'
    out, counts, _ = run([line], [("users", None)], NamespaceMapping(prefix="raw_"))
    assert orjson.loads(out)["record"]["stream"] == "raw_users"
    assert counts == {("users", None): (1, len(line))}


def test_a_last_line_without_newline_is_still_framed_for_the_destination() -> None:
    line = b'{"type":"RECORD","record":{"stream":"users","data":{},"emitted_at":1}}'
    out, counts, _ = run([line], [("users", None)])
    assert out == line + b"\n"
    assert counts[("users", None)][0] == 1
