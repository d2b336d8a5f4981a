"""The record path: source stdout -> destination stdin, one line at a time, in one thread.

Most lines are RECORDs in the compact form every CDK writes, ``{"type":"RECORD","record":
{"stream":"NAME",...``. For those the stream is read off the bytes: the prefix fixes the type
and the name ends at the next quote. Only names that are unique in the catalog and need no JSON
escaping take this shortcut, so neither a namespace nor an escaped quote can make it misread a
line. Every other line gets the msgspec envelope decode (type, record.stream, record.namespace;
``data`` is kept as raw bytes, not built). Either way the original bytes are forwarded.

Nothing the source writes can make this function raise anything but :class:`BadSourceMessage`
(the source broke the protocol; nothing of that line was forwarded) or OSError (the destination
went away). A RECORD must have ``data`` that is a JSON object, be valid UTF-8 and nest no deeper
than the decoders allow; the shortcut checks this cheaply: ``"data":{`` right after the name
(the CDK's field order), valid UTF-8 (``isascii()`` first; a quarter of airbyte-source-faker's
records are not ASCII), valid JSON syntax (else a malformed line would be counted as a record no
destination can read, and dropped there: the sync would report records it never delivered), and
a length under
``_SHORTCUT_MAX_BYTES`` (valid JSON that short cannot nest too deeply). Any line that fails one
of these takes the decode, which checks each properly.

With the optional C extension (``ferryman.workers._scan``, built at install when a C compiler
works) the source is read in chunks of up to 1 MiB (what the pipe holds) and the extension walks
the shortcut RECORDs of a chunk in one pass (the same checks, each line read once: the JSON walk
finds the line's end; strings 32 bytes a step with AVX2 where the CPU has it, else 16 with SSE2;
counts added once per run of one stream); each run is written with one call, and the first line
it does not take goes through the same per-line code as below. Without the extension, or with
``FERRYMAN_NO_EXTENSION=1``, the Python loop runs: the same behaviour, several times the CPU per
record.

Between the launcher's pipes (Linux, extension built) the chunked loop saves one of its two
copies: it reads a copy of the source's pipe made with tee(2), which leaves the bytes in the pipe,
and moves the runs of shortcut RECORDs on to the destination's pipe with splice(2), which copies
no data (:func:`_spliced_forward`). Everything else (STATE, other messages, broken lines, an
unfinished line the source has not completed yet) is read off the pipe and goes through the same
code as in the chunked loop, so what reaches the destination, in what order, is the same bytes.

A line msgspec refuses as JSON is logged and skipped, unless Python's json (lenient: NaN,
Infinity, lone surrogate escapes) reads it as a RECORD or STATE (:func:`_not_strict_json`): only
those lines pay for that second reading.

Tried and dropped: forwarding whole runs of one stream's records as one slice, checked with
``bytes.count``; the two scans per run cost as much as the per-line work they replaced.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import select
import stat
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol

import msgspec
import orjson

from ferryman.errors import ProtocolError
from ferryman.launchers.base import TimedPipeWriter, make_pipe
from ferryman.launchers.pipes import PipeReader
from ferryman.protocol.catalog import NamespaceMapping
from ferryman.protocol.codec import SourceEnvelope, message_type, peek_head
from ferryman.protocol.lenient import read_leniently
from ferryman.settings import native_extensions_enabled
from ferryman.workers.lines import MAX_LINE_BYTES, LineTooLong, lines_of
from ferryman.workers.tracker import MessageTracker, StreamKey

_ENVELOPE = msgspec.json.Decoder(SourceEnvelope)
_RAW = msgspec.json.Decoder(msgspec.Raw)
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_COMPACT_RECORD = b'{"type":"RECORD","record":{"stream":"'
_NAME_AT = len(_COMPACT_RECORD)
_DATA_OBJECT = b'","data":{'  # the name's closing quote, then data as an object
_AFTER_NAME = len(_DATA_OBJECT)
# Valid JSON nests at most half its length deep: under this, within every decoder's limit (msgspec
# and Python's json about 1,000 levels, orjson 1,024). Longer lines take the envelope decode,
# which costs per byte about what one bytes.count would.
_SHORTCUT_MAX_BYTES = 1900
_OPEN_BRACE = ord("{")
_CHUNK_BYTES = 2 << 20  # over the launcher's 1 MiB reader buffer: reads skip it, straight from the pipe

# Less than this waiting in the source's pipe: read and buffer rather than splice (see _spliced_forward).
_SPLICE_MIN_BYTES = 128 << 10

Scanner = Callable[[mmap.mmap, int, int, dict[bytes, list[int]], int, set[int]], int]
Tee = Callable[[int, int, int], int]


def _native(name: str) -> Any:
    """A function of the C extension, or None: not built (no compiler at install), not on this
    platform (``tee`` is Linux's), or turned off (FERRYMAN_NO_EXTENSION)."""
    if not native_extensions_enabled():
        return None
    try:
        from ferryman.workers import _scan
    except ImportError:
        return None
    return getattr(_scan, name, None)


SCANNER: Scanner | None = _native("scan_records")
TEE: Tee | None = _native("tee")


class BadSourceMessage(ProtocolError):
    """A RECORD or STATE the source should never have sent; the message never quotes its data."""


class Sink(Protocol):
    def write(self, data: bytes | memoryview, /) -> int: ...

    def flush(self) -> None: ...


class RecordPathHandler(Protocol):
    """What the record path hands back to the worker: everything that is not a plain record."""

    def source_state(self, line: bytes) -> bytes | None:
        """Note a STATE line; returns the line for the destination (None: drop it), or raises
        BadSourceMessage."""

    def source_message(self, line: bytes) -> None:
        """A TRACE, LOG, CONTROL or other message that never goes to the destination."""

    def not_a_message(self, line: bytes) -> None: ...

    def unknown_stream(self, key: StreamKey) -> None: ...


def record_mapper(mapping: NamespaceMapping) -> Callable[[bytes], bytes] | None:
    """Rewrites a RECORD line for the destination's names; None when the mapping changes nothing."""
    if mapping.is_identity:
        return None

    def remap(line: bytes) -> bytes:
        # Only the names are decoded: every other field, ``data`` above all, is copied as the
        # source wrote it (re-encoding data would cost its size and stop at orjson's 255 levels).
        try:
            message = _FIELDS.decode(line)
        except msgspec.DecodeError:  # a lone surrogate escape, which msgspec refuses
            return _remap_leniently(line, mapping)
        record: dict[str, Any] = _FIELDS.decode(message["record"])
        names: dict[str, Any] = {"stream": msgspec.json.decode(record["stream"])}
        if "namespace" in record:
            names["namespace"] = msgspec.json.decode(record.pop("namespace"))
        mapping.rename(names, "stream")
        record.update((key, msgspec.Raw(msgspec.json.encode(value))) for key, value in names.items())
        message["record"] = msgspec.Raw(msgspec.json.encode(record))
        return msgspec.json.encode(message) + b"\n"

    return remap


def _remap_leniently(line: bytes, mapping: NamespaceMapping) -> bytes:
    """Rename a RECORD only Python's json reads (see :func:`_not_strict_json`): the whole line is
    re-encoded with it, every character outside ASCII escaped, so a lone surrogate stays one."""
    message = json.loads(line.decode())
    record = message["record"]
    stream = record["stream"]
    names = {key: record.pop(key) for key in ("stream", "namespace") if key in record}
    mapping.rename(names, "stream")
    record.update(names)
    try:
        return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"
    except ValueError:  # a number past a double, read as infinity: written again, it would not be JSON
        why = "holds a number beyond the range of a double, which renaming its stream would change"
        raise BadSourceMessage(f"the source sent a RECORD of stream {stream!r} that {why}") from None


def _shortcut_streams(tracker: MessageTracker) -> dict[bytes, list[int]]:
    """Counters by the head of a compact RECORD line (prefix, name, ``","data":{``), for names
    that identify one configured stream on their own (so the namespace, wherever it sits in the
    line, cannot change which stream counts the record) and that JSON writes without escapes."""
    names = Counter(name for name, _ in tracker.emitted)
    shortcut = {}
    for (name, _namespace), counter in tracker.emitted.items():
        encoded = orjson.dumps(name)[1:-1]
        if names[name] == 1 and encoded == name.encode():
            shortcut[_COMPACT_RECORD + encoded + _DATA_OBJECT] = counter
    return shortcut


def forward(
    source: BinaryIO,
    sink: Sink,
    tracker: MessageTracker,
    handler: RecordPathHandler,
    mapping: NamespaceMapping,
    scanner: Scanner | None = SCANNER,
    tee: Tee | None = TEE,
    max_line: int = MAX_LINE_BYTES,
) -> None:
    """Copy until the source's stdout ends. An OSError means the destination went away; a
    BadSourceMessage a message the source should not have sent; LineTooLong a line over
    ``max_line`` (see :mod:`ferryman.workers.lines`).
    ``scanner``: the C extension's (the default when it is built) or None for the Python loop;
    ``tee``: the extension's tee (Linux), used when both ends are the launcher's pipes, or None."""
    remap = record_mapper(mapping)
    if scanner is None or remap is not None or not hasattr(source, "readinto"):
        _python_forward(source, sink, tracker, handler, remap, max_line)  # any iterable of lines will do
        return
    ends = _splice_ends(source, sink) if tee is not None else None
    if ends is None or tee is None:
        _chunked_forward(source, sink, tracker, handler, scanner, max_line)
    else:
        _spliced_forward(source, sink, ends, tracker, handler, scanner, tee, max_line)


def _python_forward(
    source: BinaryIO,
    sink: Sink,
    tracker: MessageTracker,
    handler: RecordPathHandler,
    remap: Callable[[bytes], bytes] | None,
    max_line: int,
) -> None:
    write, moved = sink.write, tracker.moved.add
    by_head = _shortcut_streams(tracker)
    last = None  # the counter of the run of shortcut records this line may continue
    for line in lines_of(source, max_line, "source"):
        size = len(line)
        # The line's head up to the data's opening brace, looked up whole: a hit proves the
        # compact prefix, the stream and that data is an object in one slice and one dict get.
        counter = by_head.get(line[: line.find(b'"', _NAME_AT) + _AFTER_NAME])
        if (
            counter is not None
            and size < _SHORTCUT_MAX_BYTES
            and line.endswith(b"}\n")  # not a line cut short by a crash
            and _is_utf8(line)
            and _is_json(line)
        ):
            counter[0] += 1
            counter[1] += size
            if counter is not last:  # noted once a run, as the C scan does
                moved(id(counter))
                last = counter
            write(line if remap is None else remap(line))
            continue
        last = None  # this line may be a STATE, which empties moved
        _decoded(line, sink, tracker, handler, remap)


def _is_utf8(line: bytes) -> bool:
    if line.isascii():
        return True
    try:
        line.decode()
    except UnicodeDecodeError:
        return False
    return True


def _is_json(line: bytes) -> bool:
    """JSON syntax, as the envelope decode checks it (``data`` kept raw)."""
    try:
        _RAW.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return False
    return True


def _chunked_forward(
    source: BinaryIO,
    sink: Sink,
    tracker: MessageTracker,
    handler: RecordPathHandler,
    scan: Scanner,
    max_line: int,
) -> None:
    """The loop around the C scan: read a chunk, forward its runs of shortcut RECORDs whole, hand
    every other complete line to :func:`_decoded`, carry an unfinished line to the next read. A
    line longer than the buffer doubles it (back to 2 MiB once that line is handled), and only the
    newly read bytes are searched for its end, so a huge line costs time in its length only."""
    # A BufferedReader's readinto1 (one read of the pipe at most); BytesIO and files have it too.
    readinto: Callable[[memoryview], int] = getattr(source, "readinto1", None) or source.readinto  # type: ignore[attr-defined]
    chunks = _Chunks(_shortcut_streams(tracker), sink, tracker, handler, scan, max_line)
    try:
        filled = 0  # buffer[:filled]: the start of a line whose end is not read yet
        while count := readinto(chunks.view[filled:]):
            filled = chunks.take(filled, count)
        chunks.finish(filled)
    finally:
        chunks.close()


class _Chunks:
    """The read buffer of the record path and what it does with a chunk read into it.

    Anonymous memory: only the pages reads reach are ever resident (a bytearray is zeroed whole).
    """

    def __init__(
        self,
        by_head: dict[bytes, list[int]],
        sink: Sink,
        tracker: MessageTracker,
        handler: RecordPathHandler,
        scan: Scanner,
        max_line: int,
    ) -> None:
        self.by_head, self.sink, self.tracker, self.handler, self.scan = by_head, sink, tracker, handler, scan
        self.max_line = max_line
        self.buffer = mmap.mmap(-1, _CHUNK_BYTES)
        self.view = memoryview(self.buffer)

    def take(self, filled: int, count: int) -> int:
        """Handle ``count`` bytes just read after the ``filled`` carried ones: forward every
        complete line (copying it to the sink); returns how many bytes are carried now."""
        buffer, view = self.buffer, self.view
        end = filled + count
        if filled and buffer.find(b"\n", filled, end) < 0:
            filled = end  # still no end to the carried line
        else:
            start = 0
            while True:
                stop = self.scan(buffer, start, end, self.by_head, _SHORTCUT_MAX_BYTES, self.tracker.moved)
                if stop > start:
                    self.sink.write(view[start:stop])
                newline = buffer.find(b"\n", stop, end)
                if newline < 0:
                    break
                start = newline + 1
                _decoded(bytes(view[stop:start]), self.sink, self.tracker, self.handler, None)
            filled = end - stop
            if stop:
                view[:filled] = view[stop:end]
        if filled >= self.max_line:  # an unfinished line already this long
            raise LineTooLong(self.max_line, "source")
        if filled == len(buffer) or (len(buffer) > _CHUNK_BYTES and filled < _CHUNK_BYTES // 2):
            self._resize(filled, 2 * len(buffer) if filled == len(buffer) else _CHUNK_BYTES)
        return filled

    def _resize(self, filled: int, size: int) -> None:
        fresh = mmap.mmap(-1, size)
        fresh[:filled] = self.view[:filled]
        self.close()
        self.buffer, self.view = fresh, memoryview(fresh)

    def finish(self, filled: int) -> None:
        if filled:  # the last line, without a newline
            _decoded(bytes(self.view[:filled]), self.sink, self.tracker, self.handler, None)

    def close(self) -> None:
        self.view.release()
        self.buffer.close()


def _splice_ends(source: BinaryIO, sink: Sink) -> tuple[PipeReader, TimedPipeWriter] | None:
    """The launcher's pipe reader under ``source`` and pipe writer under ``sink`` when both are
    Linux pipes the record path may tee and splice; else None (tests' files, other platforms)."""
    reader, writer = getattr(source, "raw", None), getattr(sink, "raw", None)
    if not isinstance(reader, PipeReader) or not isinstance(writer, TimedPipeWriter):
        return None
    try:
        if not all(stat.S_ISFIFO(os.fstat(end.fileno()).st_mode) for end in (reader, writer)):
            return None
    except (OSError, ValueError):
        return None
    return reader, writer


def _spliced_forward(
    source: BinaryIO,
    sink: Sink,
    ends: tuple[PipeReader, TimedPipeWriter],
    tracker: MessageTracker,
    handler: RecordPathHandler,
    scan: Scanner,
    tee: Tee,
    max_line: int,
) -> None:
    """The chunked loop with one copy fewer while the source keeps its pipe full: the bytes at
    the head of the source's pipe are duplicated into a private pipe with tee(2) (no copy) and
    read from there (the one copy, which the scan needs); the runs of shortcut RECORDs are then
    moved on to the destination's pipe with splice(2) (no copy), and every other line is read
    off the source's pipe and handled as in :func:`_chunked_forward`.

    While little waits in the pipe (under ``_SPLICE_MIN_BYTES`` at a look), the chunked loop's
    reads and buffered writes run instead: a splice per look would hand the destination a few
    records per wake-up where the buffer batches them up to the next STATE. A look that finds
    the pipe fuller switches back once a line ends. tee shows an unfinished line at the head of
    the pipe again at once (there is no waiting for more), so such a line is read off the pipe
    and only its end is looked for with tee.

    ``source`` must not have buffered anything yet: its pipe is read directly."""
    reader, writer = ends
    src, dst = reader.fileno(), writer.fileno()
    chunks = _Chunks(_shortcut_streams(tracker), sink, tracker, handler, scan, max_line)
    peek_out, peek_in = make_pipe()  # the launcher's pipe size, as the source's
    try:
        # What one tee may take: the smaller pipe (a full system limit leaves ours the default).
        capacity = min(fcntl.fcntl(src, fcntl.F_GETPIPE_SZ), fcntl.fcntl(peek_in, fcntl.F_GETPIPE_SZ))
        filled = 0  # buffer[:filled]: the start of a line read off the source, its end not yet
        chunked = False  # little arrives at a time: read and write as the chunked loop does
        while True:
            if chunked:
                count = reader.readinto(chunks.view[filled:])
                if not count:
                    break
                filled = chunks.take(filled, count)
                chunked = count < _SPLICE_MIN_BYTES
                continue
            try:
                seen = tee(src, peek_in, min(capacity, len(chunks.buffer) - filled))
            except BlockingIOError:
                reader.wait_for_input()
                if reader.held_open:
                    break
                continue
            if not seen:
                break  # the source's end
            _read_exactly(peek_out, chunks.view[filled : filled + seen])
            if not filled and seen >= _SPLICE_MIN_BYTES:
                whole = chunks.buffer.rfind(b"\n", 0, seen) + 1
                if whole:
                    _splice_lines(chunks, whole, src, dst, writer)
                    continue
            if filled:  # take the carried line's end, if it is here; tee then sees what follows
                newline = chunks.buffer.find(b"\n", filled, filled + seen)
                size = seen if newline < 0 else newline + 1 - filled
            else:
                size, chunked = seen, seen < _SPLICE_MIN_BYTES
            _read_exactly(src, chunks.view[filled : filled + size])  # the same bytes, now taken off the pipe
            filled = chunks.take(filled, size)
        chunks.finish(filled)
    finally:
        os.close(peek_out)
        os.close(peek_in)
        chunks.close()


def _splice_lines(chunks: _Chunks, whole: int, src: int, dst: int, writer: TimedPipeWriter) -> None:
    """Forward the lines of buffer[:whole], which are also the head of the pipe ``src``."""
    buffer, start = chunks.buffer, 0
    while True:
        stop = chunks.scan(buffer, start, whole, chunks.by_head, _SHORTCUT_MAX_BYTES, chunks.tracker.moved)
        if stop > start:
            chunks.sink.flush()  # what _decoded wrote goes first
            _splice(src, dst, stop - start, writer)
        if stop == whole:
            return
        start = buffer.find(b"\n", stop, whole) + 1
        _read_exactly(src, chunks.view[stop:start])  # the line tee showed, now taken off the pipe
        _decoded(bytes(chunks.view[stop:start]), chunks.sink, chunks.tracker, chunks.handler, None)


def _read_exactly(fd: int, view: memoryview) -> None:
    """Fill ``view`` from the pipe ``fd`` with bytes tee has shown are there."""
    got = 0
    while got < len(view):
        count = os.readv(fd, [view[got:]])
        if not count:
            raise RuntimeError("a pipe ended before the bytes tee saw in it were read")
        got += count


def _splice(src: int, dst: int, size: int, writer: TimedPipeWriter) -> None:
    """Move ``size`` bytes from the head of ``src`` to ``dst``; blocked while ``dst`` is full,
    which the writer records (the destination timeout)."""
    writer.blocked_since = time.monotonic()
    try:
        while size:
            try:
                moved = os.splice(src, dst, size)
            except BlockingIOError:
                waiting = select.poll()  # the destination's pipe is full
                waiting.register(dst, select.POLLOUT)
                waiting.poll()
                continue
            if not moved:
                raise RuntimeError("a pipe ended before the bytes tee saw in it were moved")
            size -= moved
    finally:
        writer.blocked_since = None


def _decoded(
    line: bytes,
    sink: Sink,
    tracker: MessageTracker,
    handler: RecordPathHandler,
    remap: Callable[[bytes], bytes] | None,
) -> None:
    """One line the shortcut did not take: decode its envelope, then check, count and forward."""
    try:
        envelope = _ENVELOPE.decode(line)
    except msgspec.ValidationError as exc:  # JSON of the wrong shape
        _misshapen(line, handler, str(exc))
        return
    except msgspec.DecodeError as exc:
        _not_strict_json(line, sink, tracker, handler, remap, str(exc))
        return
    except RecursionError:
        _too_deep(line, tracker, handler)
        return
    if not line.endswith(b"\n"):
        line += b"\n"  # the last line of a source that did not end it: keep the framing
    if envelope.type == "RECORD":
        record = envelope.record
        if record is None:
            raise BadSourceMessage("the source sent a RECORD message without a record")
        # As _record does; kept inline here, where every record over the shortcut's length passes.
        key = (record.stream, record.namespace)
        try:
            counter = tracker.lookup[key]
        except KeyError:
            counter = tracker.counter_for(key)
            if counter is None:
                handler.unknown_stream(key)
        if counter is None:
            return
        _check_record(line, record.stream, record.data)
        counter[0] += 1
        counter[1] += len(line)
        tracker.moved.add(id(counter))
        sink.write(line if remap is None else remap(line))
    elif envelope.type == "STATE":
        forwarded = handler.source_state(line)
        if forwarded is not None:
            sink.write(forwarded)
            sink.flush()  # a checkpoint never waits behind a full buffer
    else:
        handler.source_message(line)


def _record(
    line: bytes,
    sink: Sink,
    tracker: MessageTracker,
    handler: RecordPathHandler,
    remap: Callable[[bytes], bytes] | None,
    stream: str,
    namespace: str | None,
    data: msgspec.Raw | bytes,
) -> None:
    """Check, count and forward a RECORD only Python's json reads, as :func:`_decoded` does one
    msgspec reads; ``data``: all :func:`_check_record` needs of its JSON (empty when missing,
    else its first byte)."""
    key = (stream, namespace)
    try:
        counter = tracker.lookup[key]
    except KeyError:
        counter = tracker.counter_for(key)
        if counter is None:
            handler.unknown_stream(key)
    if counter is None:
        return
    _check_record(line, stream, data)
    counter[0] += 1
    counter[1] += len(line)
    tracker.moved.add(id(counter))
    sink.write(line if remap is None else remap(line))


def _not_strict_json(
    line: bytes,
    sink: Sink,
    tracker: MessageTracker,
    handler: RecordPathHandler,
    remap: Callable[[bytes], bytes] | None,
    why: str,
) -> None:
    """A line msgspec refused as JSON. Only here does a line pay for a lenient parse
    (:mod:`ferryman.protocol.lenient`): a line of text is logged and skipped, but a RECORD or
    STATE that Python's json reads must not vanish while the sync succeeds (a CONTROL or a TRACE
    goes to the handler, which says what of it is lost). One holding a NaN or
    an Infinity (which no JSON reader of a destination must take), and a STATE Ferryman cannot
    store, fail the source. A RECORD whose only oddity is a lone surrogate escape is JSON by the
    grammar, which the destinations' readers (Python's json, Jackson) take: it is forwarded, as
    the shortcut forwards a short one."""
    try:
        message = read_leniently(line)
    except RecursionError:
        _too_deep(line, tracker, handler)
        return
    if message is not None and message.type in ("CONTROL", "TRACE"):
        handler.source_message(line)  # a config update or an error: the handler says what is lost
        return
    if message is None or message.type not in ("RECORD", "STATE"):
        handler.not_a_message(line)
        return
    if message.type == "STATE" or message.not_json is not None:
        raise BadSourceMessage(message.failure("source", why))
    record = message.body
    stream = record.get("stream") if isinstance(record, dict) else None
    namespace = record.get("namespace") if isinstance(record, dict) else None
    if not isinstance(stream, str) or not isinstance(namespace, str | None):
        raise BadSourceMessage("the source sent a RECORD that breaks the protocol: no stream name as text")
    data = record.get("data")
    if not line.endswith(b"\n"):
        line += b"\n"
    # All _check_record reads of the data: whether it is there, and its first byte.
    first = b"" if "data" not in record else b"{" if isinstance(data, dict) else b"["
    _record(line, sink, tracker, handler, remap, stream, namespace, first)


def _check_record(line: bytes, stream: str, data: msgspec.Raw | bytes) -> None:
    if len(data) == 0:
        raise BadSourceMessage("the source sent a RECORD without data", stream=stream)
    if memoryview(data)[0] != _OPEN_BRACE:
        raise BadSourceMessage("the source sent a RECORD whose data is not a JSON object", stream=stream)
    if not line.isascii():
        try:
            line.decode()
        except UnicodeDecodeError as exc:
            raise BadSourceMessage(
                f"the source sent a RECORD that is not valid UTF-8 (byte {exc.start})", stream=stream
            ) from None


def _misshapen(line: bytes, handler: RecordPathHandler, why: str) -> None:
    """A JSON object line whose envelope does not decode: a broken RECORD is the source's fault."""
    kind = message_type(line)
    if kind in ("RECORD", "STATE"):
        raise BadSourceMessage(f"the source sent a {kind} that breaks the protocol: {why}")
    if kind is None:
        handler.not_a_message(line)
    else:
        handler.source_message(line)


def _too_deep(line: bytes, tracker: MessageTracker, handler: RecordPathHandler) -> None:
    """A line nested deeper than msgspec decodes: a RECORD or STATE is the source's fault, whatever
    else is logged (cut short) and skipped."""
    kind, stream = peek_head(line)
    if kind == "RECORD" and stream is not None and all(name != stream for name, _ in tracker.emitted):
        handler.unknown_stream((stream, None))
    elif kind in ("RECORD", "STATE"):
        raise BadSourceMessage(
            f"the source sent a {kind} nested too deeply to decode (over about 1,000 levels)",
            stream=stream,
        )
    else:
        handler.not_a_message(line)
