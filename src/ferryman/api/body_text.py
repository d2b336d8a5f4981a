"""Refuse a JSON body that holds a lone surrogate, or a number JSON has not (``NaN``, ``Infinity``,
``1e999``), wherever it is, or that nests too deep, before any route reads it.

JSON lets a string escape one half of a UTF-16 surrogate pair alone (``"\\ud800"``); Python's
decoder turns it into a ``str`` that is not Unicode text, and nothing downstream can encode it:
not the store (a 500 from the JSON writer of a configuration or a state, a codec's message from
a name's column), not even the error response that would quote it back. One check here covers
every route and every field (names, configurations, states, prefixes, webhooks), so no route
needs its own.

Only a body that has such an escape in it is parsed here (a search in C); FastAPI still parses
every body itself, and answers malformed JSON as before.

A body nested deeper than :data:`MAX_BODY_DEPTH` is refused here too, told from its brackets
without parsing it: FastAPI's reader recurses, and at about a thousand levels it fails with a
400 that says only "There was an error parsing the body".
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from ferryman.api.body_limit import replaying
from ferryman.api.problems import Problem, problem_response
from ferryman.documents import strict_json, text_fault
from ferryman.protocol.depth import MAX_DEPTH, text_nests_deeper_than

# A \uD800-\uDFFF escape, either half of a pair; whether it is alone is for the decoded text to tell.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# What may be a number JSON has not (NaN, Infinity) or one past a double (1e999), which Python's
# reader (FastAPI's) takes as floats, written out later as null; a strict reading tells.
_ODD_NUMBER = re.compile(rb"NaN|Infinity|[0-9][eE]\+?[0-9]{3}")
# Room for what a body wraps around a document (a configuration, a state) that may nest
# MAX_DEPTH levels: up to here the route refuses a document too deep naming it ("the
# configuration nests..."), and Python's reader is far from the end of its stack.
MAX_BODY_DEPTH = 2 * MAX_DEPTH


class JsonBodyGuard:
    """Answer 422 to a JSON body nested too deep, or holding a lone surrogate or a number JSON has
    not, naming where."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: the app hears of it
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if text_nests_deeper_than(body, MAX_BODY_DEPTH):
            detail = (
                f"the request body nests more than {MAX_BODY_DEPTH} levels deep; "
                f"no configuration, state or catalog nests more than {MAX_DEPTH}"
            )
            await problem_response(Problem(422, detail))(scope, receive, send)
            return
        odd = _odd_number(body)
        if odd is not None:
            detail = f"the request body is not valid JSON: {odd}; send a number, or null"
            await problem_response(Problem(422, detail))(scope, receive, send)
            return
        where = _lone_surrogate(body)
        if where is not None:
            detail = (
                f"the request body holds {where[1]}, at {where[0]}: send UTF-8 text "
                "(a character past U+FFFF escaped as a pair, \\ud83d\\ude00)"
            )
            await problem_response(Problem(422, detail))(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)


def _odd_number(body: bytes) -> str | None:
    """What in ``body`` is a number JSON cannot hold, with where it is; None when nothing is."""
    if _ODD_NUMBER.search(body) is None:
        return None
    try:
        strict_json(body.decode("utf-8"))
    except UnicodeDecodeError:
        return None  # the route answers it
    except json.JSONDecodeError as exc:
        if exc.msg.endswith(_NUMBER_FAULTS):
            return f"{exc.msg} (at character {exc.pos})"
    except RecursionError:
        return None
    return None


_NUMBER_FAULTS = ("is not a JSON number", "is beyond the range of a JSON number (a double)")


def _lone_surrogate(body: bytes) -> tuple[str, str] | None:
    if _SURROGATE_ESCAPE.search(body) is None:
        return None
    try:
        document: Any = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (a form), or not readable: the route says so
        return None
    return text_fault(document, nul=False)
