"""The lines the built-in destinations' fast reader (msgspec) refuses: the slow path.

msgspec refuses a RECORD holding a lone UTF-16 surrogate escape (``"\\ud800"``), which JSON's
grammar allows and Python's json and Jackson read; Ferryman's worker forwards such records (see
``docs/reliability.md``). They used to be skipped unread, while the sync counted them committed.
Now :class:`RefusedLines` reads each refused line leniently
(:func:`ferryman.protocol.lenient.read_leniently`):

* a line that is no protocol message (text, a JSON object without a ``type``) is skipped and
  counted, as before, and the count is logged at the end;
* a RECORD of a configured stream whose only fault is a lone surrogate is handed to the sink's
  :meth:`~ferryman.builtin._destination.Sink.storable_line`, which returns the line to buffer:
  destination-jsonl keeps it as it is and writes its ``data`` byte for byte
  (:func:`data_text`), the SQL destinations rewrite it (:func:`without_lone_surrogates`);
* any other plainly-RECORD line (a NaN, broken UTF-8, no stream name, nested too deep) fails
  the destination in one line naming the stream and what is wrong (:class:`UnstorableRecord`).

Other messages msgspec refuses (a STATE, a TRACE) are ignored, as before: a state the
destination does not echo is not committed. Only refused lines come here, so valid records
cost what they did.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from ferryman.builtin._catalog import StreamKey
from ferryman.builtin._columns import SERIALIZATION_ERROR, Column, change
from ferryman.protocol.codec import peek_head
from ferryman.protocol.lenient import SURROGATE, lone_surrogate, read_leniently

REPLACEMENT = "\ufffd"
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_value_at = json.JSONDecoder().raw_decode
_scan_string: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_encode = msgspec.json.Encoder(decimal_format="number").encode


class UnstorableRecord(Exception):
    """A line that is plainly a RECORD, but that the destination cannot store as it was sent."""


class _Buffered(Protocol):
    @property
    def buffers(self) -> dict[StreamKey, list[bytes]]: ...

    def storable_line(self, key: StreamKey, line: bytes) -> bytes: ...


class RefusedLines:
    """What the loader does with each line msgspec refused (see the module's docstring)."""

    def __init__(self, sink: _Buffered, unknown: Callable[[StreamKey], None]) -> None:
        self.sink = sink
        self.unknown = unknown  # a record of a stream the catalog does not hold: warned about once
        self.not_messages = 0

    def take(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            message = read_leniently(line)
        except RecursionError:  # deeper than Python's json goes
            if peek_head(line)[0] == "RECORD":
                raise UnstorableRecord("the source sent a RECORD nested too deeply to decode") from None
            message = None
        if message is None:
            self.not_messages += 1
            return
        if message.type != "RECORD":
            return
        record = message.body
        stream = record.get("stream") if isinstance(record, dict) else None
        namespace = record.get("namespace") if isinstance(record, dict) else None
        if not isinstance(stream, str) or not isinstance(namespace, str | None):
            why = "breaks the protocol: no stream name as text"
            raise UnstorableRecord(f"the source sent a RECORD that {why}")
        key = (namespace, stream)
        if key not in self.sink.buffers:
            self.unknown(key)
            return
        if message.not_json is not None:
            raise UnstorableRecord(message.failure("source"))
        try:
            line.decode()
        except UnicodeDecodeError as exc:
            of = f" of stream {message.stream!r}" if message.stream is not None else ""
            raise UnstorableRecord(
                f"the source sent a RECORD{of} that is not valid UTF-8 (byte {exc.start})"
            ) from None
        stored = self.sink.storable_line(key, line)
        self.sink.buffers[key].append(stored)


def stream_label(key: StreamKey) -> str:
    """A stream's name for a log line; a lone surrogate in it shown as its escape."""
    namespace, stream = key
    text = f"{namespace}.{stream}" if namespace else stream
    return text.encode("utf-8", "backslashreplace").decode()


# --- destination-jsonl: the record's data as it was written ---------------------------------


def data_text(line: bytes) -> bytes | None:
    """The bytes of ``record.data`` in ``line`` exactly as written (a lone surrogate escape stays
    the six characters it is), or None when the record has no ``data`` or Python's json cannot
    read the line. The last of repeated members counts, as in json.loads."""
    try:
        text = line.decode()
        span = _member(text, _skip(text, 0), "record")
        span = _member(text, span[0], "data") if span is not None else None
    except (ValueError, IndexError):  # not JSON after all: a JSONDecodeError, a UnicodeDecodeError
        return None
    return None if span is None else text[span[0] : span[1]].encode()


def _skip(text: str, at: int) -> int:
    """Where the JSON whitespace at ``text[at]`` ends."""
    found = _WHITESPACE.match(text, at)
    return found.end() if found is not None else at


def _member(text: str, start: int, name: str) -> tuple[int, int] | None:
    """Where the value of member ``name`` of the JSON object at ``text[start]`` begins and ends;
    None when there is no object there or it has no such member."""
    if not text.startswith("{", start):
        return None
    found = None
    at = _skip(text, start + 1)
    if text.startswith("}", at):
        return None
    while True:
        key, at = _scan_string(text, at + 1)
        begin = _skip(text, _skip(text, at) + 1)  # past the ':'
        end = _value_at(text, begin)[1]
        if key == name:
            found = (begin, end)
        at = _skip(text, end)
        if text.startswith("}", at):
            return found
        at = _skip(text, at + 1)  # past the ','


# --- the SQL destinations: a value that holds one is NULL, and a change says so -----------------


def without_lone_surrogates(line: bytes, columns: list[Column]) -> bytes:
    """``line`` (a RECORD that Python's json reads, holding lone surrogates) rewritten so that
    msgspec, DuckDB and PostgreSQL read it: each column whose value holds a lone surrogate (no
    UTF-8 text, so no row, holds one) is null, and ``record.meta.changes`` lists every column so
    NULLed (``DESTINATION_SERIALIZATION_ERROR``) after the source's own changes. A lone surrogate
    anywhere else (a key, a property that is no column) becomes U+FFFD: it is stored nowhere.
    Numbers keep the digits they were written with."""
    message = json.loads(line.decode(), parse_float=Decimal)
    record = message["record"]
    data = record.get("data")
    if isinstance(data, dict):
        present = [column for column in columns if _get(data, column.path) is not None]
        for column in present:
            if lone_surrogate(_get(data, column.path)) is not None:
                _set_null(data, column.path)
        nulled = [column for column in present if _get(data, column.path) is None]
        if nulled:
            meta = record.get("meta")
            if not isinstance(meta, dict):
                meta = record["meta"] = {}
            listed = meta.get("changes")
            meta["changes"] = [
                *(listed if isinstance(listed, list) else []),
                *(change(column.field, SERIALIZATION_ERROR) for column in nulled),
            ]
    _replace_lone_surrogates(message)
    return _encode(message)


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _set_null(data: dict[str, Any], path: tuple[str, ...]) -> None:
    node: Any = data
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node[path[-1]] = None


def _replace_lone_surrogates(value: dict[str, Any]) -> None:
    """Every lone surrogate in the keys and strings of ``value`` becomes U+FFFD, in place (with
    a stack: the value may nest as deep as json.loads goes)."""

    def clean(text: str) -> str:
        return SURROGATE.sub(REPLACEMENT, text) if SURROGATE.search(text) else text

    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if any(SURROGATE.search(key) for key in item):
                entries = list(item.items())
                item.clear()
                item.update((clean(key), entry) for key, entry in entries)
            for key, entry in item.items():
                if isinstance(entry, str):
                    item[key] = clean(entry)
                elif isinstance(entry, dict | list):
                    stack.append(entry)
        elif isinstance(item, list):
            for index, entry in enumerate(item):
                if isinstance(entry, str):
                    item[index] = clean(entry)
                elif isinstance(entry, dict | list):
                    stack.append(entry)
