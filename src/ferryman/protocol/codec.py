"""Reading and writing Airbyte messages, one JSON object per line.

The record path reads only the envelope: :func:`decode_envelope` decodes ``type`` and, for a
RECORD, ``stream`` and ``namespace``; msgspec skips ``data`` without building it. Every other
message type is rare and is parsed in full with :func:`parse_message`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec
import orjson


class MessageType(StrEnum):
    RECORD = "RECORD"
    STATE = "STATE"
    LOG = "LOG"
    SPEC = "SPEC"
    CONNECTION_STATUS = "CONNECTION_STATUS"
    CATALOG = "CATALOG"
    TRACE = "TRACE"
    CONTROL = "CONTROL"


class RecordHead(msgspec.Struct, gc=False):
    stream: str
    namespace: str | None = None


class Envelope(msgspec.Struct, gc=False):
    type: str
    record: RecordHead | None = None


_envelope_decoder = msgspec.json.Decoder(Envelope)


def decode_envelope(line: bytes) -> Envelope | None:
    """The envelope of one line, or None when the line is not an Airbyte message."""
    try:
        return _envelope_decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


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
