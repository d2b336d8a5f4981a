"""Reading and writing Airbyte messages, one JSON object per line.

The record path reads only the envelope: :func:`decode_envelope` decodes ``type`` and, for a
RECORD, ``stream`` and ``namespace``; msgspec skips ``data`` without building it. Every other
message type is rare and is parsed in full with :func:`parse_message`.

Neither decoder raises on hostile input. msgspec refuses JSON nested deeper than the
interpreter's recursion limit (about 1,000 levels) with RecursionError, orjson deeper than 1,024
levels with a decode error; both are "not a message" here. :func:`peek_head` reads the type and
record stream of such a line without recursion, so the worker can still say whose line it was.
"""

from __future__ import annotations

import re
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


def parse_message(line: bytes) -> dict[str, Any] | None:
    """A whole message as a dict, or None when the line is not a JSON object with a type."""
    try:
        message = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    return message


def encode(message: dict[str, Any]) -> bytes:
    """One message as a protocol line, newline included."""
    return orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE)
