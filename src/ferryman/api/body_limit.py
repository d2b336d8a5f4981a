"""A ceiling on the size of a request's body.

Nothing the API takes comes near it: a source's configuration is kilobytes (a declarative
manifest or a key file, hundreds of them), a connection with thousands of streams a few
megabytes. Without a ceiling a 100 MB PATCH was read, parsed (about 1 GB of the server's memory
for one request; a few at once exhaust a machine) and stored into every job's snapshot. 10 MiB is
also Micronaut's default, which Airbyte's own server runs with.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferryman.api.problems import Problem, problem_response

MAX_BODY_BYTES = 10 * 1024 * 1024


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app ``body``, read already, as one message, then whatever
    ``receive`` has next (the client going away)."""
    read: Message | None = {"type": "http.request", "body": body, "more_body": False}

    async def replay() -> Message:
        nonlocal read
        if read is None:
            return await receive()
        message, read = read, None
        return message

    return replay


class BodyLimit:
    """Answer 413 to a body over ``max_bytes``: at once when its Content-Length says so (nothing
    is read); a body without one (chunked) is read first, up to the ceiling, and then handed on.
    The server's HTTP parser holds a body with a Content-Length to that length."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await self._refuse(f"{int(declared)} bytes", scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: the app hears of it
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(f"over {self.max_bytes} bytes", scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)

    async def _refuse(self, size: str, scope: Scope, receive: Receive, send: Send) -> None:
        detail = (
            f"the request body is {size}; at most {self.max_bytes} bytes are accepted "
            "(FERRYMAN_API_MAX_BODY_MB)"
        )
        response = problem_response(Problem(413, detail))
        response.headers["Connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)
