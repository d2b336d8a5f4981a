"""The record path: source stdout -> destination stdin, one line at a time, in one thread.

Most lines are RECORDs in the compact form every CDK writes, ``{"type":"RECORD","record":
{"stream":"NAME",...``. For those the stream is read off the bytes: the prefix fixes the type
and the name ends at the next quote. Only names that are unique in the catalog and need no JSON
escaping take this shortcut, so neither a namespace nor an escaped quote can make it misread a
line. Every other line gets the msgspec envelope decode (type, record.stream, record.namespace;
``data`` is skipped, not built). Either way the original bytes are forwarded.

Tried and dropped: forwarding whole runs of one stream's records as one slice, checked with
``bytes.count``; the two scans per run cost as much as the per-line work they replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO, Protocol

import msgspec
import orjson

from ferryman.protocol.catalog import NamespaceMapping
from ferryman.protocol.codec import Envelope
from ferryman.workers.tracker import MessageTracker, StreamKey

_ENVELOPE = msgspec.json.Decoder(Envelope)
_NOT_A_MESSAGE = (msgspec.DecodeError, msgspec.ValidationError)
_COMPACT_RECORD = b'{"type":"RECORD","record":{"stream":"'
_NAME_AT = len(_COMPACT_RECORD)


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class RecordPathHandler(Protocol):
    """What the record path hands back to the worker: everything that is not a plain record."""

    def source_state(self, line: bytes) -> bytes | None:
        """Note a STATE line; returns the line for the destination, None if it is not a valid STATE."""

    def source_message(self, line: bytes) -> None:
        """A TRACE, LOG, CONTROL or other message that never goes to the destination."""

    def not_a_message(self, line: bytes) -> None: ...

    def unknown_stream(self, key: StreamKey) -> None: ...


def record_mapper(mapping: NamespaceMapping) -> Callable[[bytes], bytes] | None:
    """Rewrites a RECORD line for the destination's names; None when the mapping changes nothing."""
    if mapping.is_identity:
        return None

    def remap(line: bytes) -> bytes:
        message = orjson.loads(line)
        mapping.rename(message["record"], "stream")
        return orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE)

    return remap


def _shortcut_streams(tracker: MessageTracker) -> dict[bytes, list[int]]:
    """Counters by the raw bytes of a stream name, for names that identify one configured stream
    on their own (so the namespace, wherever it sits in the line, cannot change which stream
    counts the record) and that JSON writes without escapes."""
    names = [name for name, _ in tracker.emitted]
    shortcut = {}
    for (name, _namespace), counter in tracker.emitted.items():
        encoded = orjson.dumps(name)[1:-1]
        if names.count(name) == 1 and encoded == name.encode():
            shortcut[encoded] = counter
    return shortcut


def forward(
    source: BinaryIO,
    sink: Sink,
    tracker: MessageTracker,
    handler: RecordPathHandler,
    mapping: NamespaceMapping,
) -> None:
    """Copy until the source's stdout ends. An OSError means the destination went away."""
    write = sink.write
    decode = _ENVELOPE.decode
    lookup = tracker.lookup
    remap = record_mapper(mapping)
    by_name = _shortcut_streams(tracker)
    for line in source:
        if line.startswith(_COMPACT_RECORD):
            end = line.find(b'"', _NAME_AT)
            counter = by_name.get(line[_NAME_AT:end])
            if counter is not None and line.endswith(b"}\n"):  # not a line cut short by a crash
                counter[0] += 1
                counter[1] += len(line)
                write(line if remap is None else remap(line))
                continue
        try:
            envelope = decode(line)
        except _NOT_A_MESSAGE:
            handler.not_a_message(line)
            continue
        if not line.endswith(b"\n"):
            line += b"\n"  # the last line of a source that did not end it: keep the framing
        if envelope.type == "RECORD" and envelope.record is not None:
            key = (envelope.record.stream, envelope.record.namespace)
            try:
                counter = lookup[key]
            except KeyError:
                counter = tracker.counter_for(key)
                if counter is None:
                    handler.unknown_stream(key)
            if counter is None:
                continue
            counter[0] += 1
            counter[1] += len(line)
            write(line if remap is None else remap(line))
        elif envelope.type == "STATE":
            forwarded = handler.source_state(line)
            if forwarded is not None:
                write(forwarded)
                sink.flush()  # a checkpoint never waits behind a full buffer
        else:
            handler.source_message(line)
