"""What a line the strict decoders refused would be, read leniently, and what is wrong with it.

msgspec and orjson refuse three things Python's json module reads:

* ``NaN``, ``Infinity`` and ``-Infinity``: not JSON at all, but what ``json.dumps`` writes for
  such floats, so older Python CDKs and pandas-based sources send them in records and cursors;
* lone UTF-16 surrogate escapes (``"\\ud800"``): JSON's grammar allows them, Python's json and
  Jackson read them, but they are no character: no UTF-8 text, and so no Postgres row, holds one;
* numbers beyond a double's range (``1e400``): valid JSON that orjson, and so the store, cannot
  keep (msgspec's scan lets them through; a RECORD carries them as written).

A line that is plainly a RECORD or STATE but holds one of these must not be logged and skipped
like a line of text, or the sync would report success with a record or a checkpoint missing;
nor may a CONTROL (a config update: a rotated token) or a TRACE error vanish without a word.
:func:`read_leniently` tells the worker what the line is (type, stream) and what is wrong, in
words that never quote the data. It costs a parse with the standard library, so only lines the
fast decoders already refused (the slow path) ever come here.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

SURROGATE = re.compile("[\ud800-\udfff]")  # any half of a pair; read text holds only lone ones
_BODY = {"RECORD": "record", "STATE": "state", "CONTROL": "control", "TRACE": "trace"}


@dataclass(frozen=True)
class LenientMessage:
    """A line Python's json reads as a JSON object with a string ``type``.

    ``not_json``: why the line is not JSON (a NaN or an Infinity), or None; ``not_storable``: why
    it is JSON that Ferryman cannot keep (a lone surrogate, a number past a double), or None."""

    type: str
    stream: str | None
    body: Any  # the message's ``record``, ``state``, ``control`` or ``trace`` by its type, else None
    not_json: str | None
    not_storable: str | None
    line: bytes = field(repr=False, default=b"")

    @property
    def problem(self) -> str | None:
        """What is wrong with it, as the end of a sentence: "is not valid JSON: ..."."""
        if self.not_json is not None:
            return f"is not valid JSON: {self.not_json}"
        if self.not_storable is not None:
            return f"cannot be stored: {self.not_storable}"
        return None

    def failure(self, who: str, fallback: str | None = None) -> str:
        """The one line that fails the job: ``the source sent a RECORD of stream 'users' that is
        not valid JSON: NaN is not a JSON number``. When nothing above was found wrong (broken
        UTF-8, most likely), it ends with ``fallback``, the strict decoder's own reason (which
        says where, never what); by default orjson's."""
        of = f" of stream {self.stream!r}" if self.stream is not None else ""
        problem = self.problem or f"cannot be read: {fallback or self.refusal}"
        return f"the {who} sent a {self.type}{of} that {problem}"

    @property
    def refusal(self) -> str:
        """Why orjson refuses the line this was read from."""
        try:
            orjson.loads(self.line)
        except orjson.JSONDecodeError as exc:
            return str(exc)
        return "orjson reads no message in it"


def read_leniently(line: bytes) -> LenientMessage | None:
    """The message Python's json reads in ``line``, or None when it reads no JSON object with a
    string ``type`` there. RecursionError for a line nested deeper than it goes (as msgspec's)."""
    start = line.lstrip()[:1]
    if start != b"{":  # a line of text: the common case on this path, answered at once
        return None
    constants: list[str] = []
    huge: list[str] = []

    def constant(name: str) -> float:
        constants.append(name)
        return math.nan

    def number(text: str) -> float:
        value = float(text)
        if math.isinf(value):
            huge.append(text)
        return value

    try:  # invalid UTF-8 read as U+FFFD: the record path names that fault on its own
        message = json.loads(line.decode("utf-8", "replace"), parse_constant=constant, parse_float=number)
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return None
    kind = message["type"]
    body = message.get(_BODY.get(kind, ""))
    not_json = f"{constants[0]} is not a JSON number" if constants else None
    not_storable = None
    lone = lone_surrogate(message)
    if lone is not None:
        not_storable = f"it holds a lone UTF-16 surrogate ({lone}), which is no character"
    elif huge:
        not_storable = f"{_cut(huge[0])} is beyond the range of a double"
    return LenientMessage(kind, _stream_of(kind, body), body, not_json, not_storable, line)


def lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in a key or string of ``value``, as its escape (json.loads joins
    every valid pair into one character, so any surrogate left is alone). Walked with a stack:
    the value may nest as deep as json.loads goes."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and (found := SURROGATE.search(item)) is not None:
            return f"\\u{ord(found[0]):04x}"
    return None


def _stream_of(kind: str, body: Any) -> str | None:
    """The stream a RECORD or a STREAM STATE is about, when it names one as text."""
    if not isinstance(body, dict):
        return None
    if kind == "RECORD":
        name = body.get("stream")
    elif kind == "STATE" and body.get("type") == "STREAM":
        stream = body.get("stream")
        descriptor = stream.get("stream_descriptor") if isinstance(stream, dict) else None
        name = descriptor.get("name") if isinstance(descriptor, dict) else None
    else:
        return None
    if not isinstance(name, str) or SURROGATE.search(name):
        return None
    return name[:200]


def _cut(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."
