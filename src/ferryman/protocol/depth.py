"""How deep a JSON document nests, found without recursion.

Python's stack ends near 1,000 frames, and what walks a document (copying, masking, encoding it
with orjson, which stops at 255 levels, checking it against a JSON schema) takes one to several
frames a level, while the decoders accept about 1,000 levels. So whatever Ferryman keeps (a
config, a state, a spec, a catalog: a user's or a connector's) is held to one limit, checked
before anything walks it.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

# A declarative manifest with inline schemas nests tens of levels, a deeply nested stream schema
# about a hundred (two levels per nested object); walkers need up to 2 frames a level.
MAX_DEPTH = 200

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # brackets inside strings do not nest
_NOT_A_BRACKET = re.compile(rb"[^][{}]+")
# Each bracket as one signed byte: +1 opens, -1 closes; their running sum is the depth.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def may_nest_deeper_than(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text ``raw`` could nest more than ``limit`` levels: it cannot with no more
    opening brackets than that (a count in C, for what arrives often: a source's every STATE)."""
    return raw.count(b"{") + raw.count(b"[") > limit


def nests_deeper_than(document: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether objects and lists in ``document`` nest more than ``limit`` levels (the document
    itself, an object or a list, is level 1)."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def text_nests_deeper_than(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text ``raw`` nests more than ``limit`` levels, told without parsing it:
    Python's JSON reader recurses, and a document of thousands of levels ends its stack. The
    brackets outside strings are summed in C; text that is no JSON gets an answer too (the
    depth its brackets reach), for the reader to refuse it in its own words."""
    if not may_nest_deeper_than(raw, limit):
        return False
    brackets = _NOT_A_BRACKET.sub(b"", _JSON_STRING.sub(b"", raw)).translate(_STEPS)
    return max(accumulate(memoryview(brackets).cast("b")), default=0) > limit
