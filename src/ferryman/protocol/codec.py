"""Reading and writing Airbyte messages, one JSON object per line.

The record path reads only the envelope: :func:`decode_envelope` decodes ``type`` and, for a
RECORD, ``stream`` and ``namespace``; msgspec skips ``data`` without building it. Every other
message type is rare and is parsed in full with :func:`parse_message`.

Neither decoder raises on hostile input. msgspec refuses JSON nested deeper than the
interpreter's recursion limit (about 1,000 levels) with RecursionError, orjson deeper than 1,024
levels with a decode error; both are "not a message" here. :func:`peek_head` reads the type and
record stream of such a line without recursion, so the worker can still say whose line it was.

Integers past 64 bits (a NUMERIC(38) cursor, a 30-digit id) keep every digit: orjson reads them
as floats, so :func:`loads` reads a document holding a run of 20 digits or more again with
msgspec, which keeps them as Python ints, and :func:`dumps` writes such ints with the standard
library where orjson refuses them. A connector's state goes through both on its way to the store
and back to the connector: before, a cursor of 123456789012345678901234567890 came back as
1.2345678901234568e+29. Fractions stay doubles, as the Airbyte platform reads them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import msgspec
import orjson


class RecordHead(msgspec.Struct, gc=False):
    stream: str
    namespace: str | None = None


class Envelope(msgspec.Struct, gc=False):
    type: str
    record: RecordHead | None = None


NO_DATA = msgspec.Raw(b"")


class SourceRecordHead(msgspec.Struct, gc=False):
    """What the worker checks of a source's RECORD: ``data`` stays raw bytes, never built."""

    stream: str
    namespace: str | None = None
    data: msgspec.Raw = NO_DATA  # a Raw cannot be in a union with None


class SourceEnvelope(msgspec.Struct, gc=False):
    type: str
    record: SourceRecordHead | None = None


class _TypeOnly(msgspec.Struct, gc=False):
    type: object = None


# What a decode of hostile bytes can raise: bad JSON, the wrong shape, or nesting too deep.
UNDECODABLE = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)

_envelope_decoder = msgspec.json.Decoder(Envelope)
_type_decoder = msgspec.json.Decoder(_TypeOnly)


def decode_envelope(line: bytes) -> Envelope | None:
    """The envelope of one line, or None when the line is not an Airbyte message."""
    try:
        return _envelope_decoder.decode(line)
    except UNDECODABLE:
        return None


def message_type(line: bytes) -> str | None:
    """The ``type`` of a JSON object line whose envelope has the wrong shape; None if it has none."""
    try:
        kind = _type_decoder.decode(line).type
    except UNDECODABLE:
        kind = peek_head(line)[0]
    return kind if isinstance(kind, str) else None


_STRING = rb'"[^"\\]*(?:\\.[^"\\]*)*"'
_TOKEN = re.compile(rb"(" + _STRING + rb")(\s*:)?|[\[\]{}]")
_VALUE = re.compile(rb"\s*(" + _STRING + rb")")


def _string_at(line: bytes, at: int) -> str | None:
    found = _VALUE.match(line, at)
    if found is None:
        return None
    try:
        value = orjson.loads(found[1])
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None


def peek_head(line: bytes) -> tuple[str | None, str | None]:
    """The top-level ``type`` and the ``record.stream`` of a line, by a scan without recursion.

    For lines the decoders refuse as too deep: tells a RECORD or STATE (the source's fault) from
    a LOG or garbage line (logged and skipped). Slow (a Python loop over the line's tokens), so
    only ever called for such lines."""
    depth, member, kind, stream = 0, None, None, None
    for token in _TOKEN.finditer(line):
        if token[1] is None:
            depth += 1 if token[0] in (b"{", b"[") else -1
            if depth <= 0:
                break
            continue
        if token[2] is None:
            continue  # a string value, not a key
        if depth == 1:
            member = _string_at(token[1], 0)
            if member == "type":
                kind = _string_at(line, token.end())
        elif depth == 2 and member == "record" and _string_at(token[1], 0) == "stream":
            stream = _string_at(line, token.end())
        if kind is not None and (kind != "RECORD" or stream is not None):
            break
    return kind, stream


_DIGITS = b"0123456789"
_LONG_NUMBER = re.compile(rb"[0-9]{20}")  # where an integer past 64 bits may be (or a long string)


def loads(data: bytes) -> Any:
    """JSON as orjson reads it (its errors, its depth limit), but integers past 64 bits exact."""
    value = orjson.loads(data)
    # Twenty digits in all first (a count in C), then a run of them (the regex, ~1 µs a line).
    if len(data) - len(data.translate(None, _DIGITS)) < 20 or _LONG_NUMBER.search(data) is None:
        return value
    try:
        return msgspec.json.decode(data)
    except (RecursionError, msgspec.DecodeError):  # deeper than msgspec goes: orjson's reading
        return value


def dumps(value: Any, option: int = 0, default: Callable[[Any], Any] | None = None) -> bytes:
    """``orjson.dumps``, except that integers past 64 bits, which it refuses, are written exact
    (by the standard library, in the same layout: compact, or indented by two, keys sorted when
    asked, a newline appended when asked)."""
    try:
        return orjson.dumps(value, option=option, default=default)
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise
    indent = 2 if option & orjson.OPT_INDENT_2 else None
    text = json.dumps(
        value,
        indent=indent,
        separators=(",", ": ") if indent else (",", ":"),
        sort_keys=bool(option & orjson.OPT_SORT_KEYS),
        ensure_ascii=False,
        default=default,
    )
    return text.encode() + (b"\n" if option & orjson.OPT_APPEND_NEWLINE else b"")


def parse_message(line: bytes) -> dict[str, Any] | None:
    """A whole message as a dict, or None when the line is not a JSON object with a type."""
    try:
        message = loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    return message


def encode(message: dict[str, Any]) -> bytes:
    """One message as a protocol line, newline included."""
    return dumps(message, option=orjson.OPT_APPEND_NEWLINE)
