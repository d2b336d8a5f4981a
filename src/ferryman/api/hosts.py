"""Without auth, the server answers only requests addressed to a loopback name.

Serving without credentials is safe only because nobody but this machine reaches a loopback
address. A browser on this machine does, on behalf of any page it opens: a page of another site
whose name its DNS then points at 127.0.0.1 ("DNS rebinding") is, to the browser, the same site
as this server, so it could read the web UI's forms, their CSRF tokens and the API's answers,
and post back (create a source that installs a package, say). Its requests still name its own
host in the ``Host`` header: that is what is checked here, before anything else runs.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from starlette.datastructures import URL
from starlette.responses import PlainTextResponse

MISDIRECTED = 421


def loopback_name(host: str) -> bool:
    """``localhost`` (and names under it), or a loopback address."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class LoopbackHostsOnly:
    """ASGI middleware: a request whose Host is not a loopback name gets a 421 and nothing else."""

    def __init__(self, app: Any, port: int) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            host = URL(scope=scope).hostname or ""
            if not loopback_name(host):
                response = PlainTextResponse(
                    f"this server asks for no credentials, so it answers only requests to a loopback "
                    f"address, not to {host[:100]!r}: open http://127.0.0.1:{self.port}/, or create an "
                    "application (ferryman applications create NAME) to serve other names with auth\n",
                    MISDIRECTED,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
