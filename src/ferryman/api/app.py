"""The ASGI app: Airbyte's public API at ``/v1`` and ``/api/public/v1``, its token endpoint also
at the root (the SDK's default token URL resolves there), and an access line per request."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import PlainTextResponse

from ferryman import __version__
from ferryman.api import actors, config_api, jobs, notifications, own, problems
from ferryman.api.auth import Guard
from ferryman.api.body_limit import BodyLimit
from ferryman.api.body_text import JsonBodyGuard
from ferryman.api.context import ApiContext
from ferryman.api.metrics import MetricsOptions, metrics_router
from ferryman.api.models import Token, ok
from ferryman.api.problems import Problem
from ferryman.credentials import Verifier
from ferryman.printable import visible
from ferryman.protocol.codec import loads

PUBLIC_PREFIXES = ("/v1", "/api/public/v1")
CONFIG_PREFIX = "/api/v1"
access_log = logging.getLogger("ferryman.api.access")


def create_app(context: ApiContext, auth_required: bool, metrics: MetricsOptions | None = None) -> FastAPI:
    app = FastAPI(
        title="Ferryman",
        version=__version__,
        description=(
            "Airbyte's public API (/v1, /api/public/v1), the part of its config API that "
            "dagster-airbyte and Airflow's provider call (/api/v1), and Ferryman's own routes "
            "(/v1/ferryman), on Ferryman's jobs."
        ),
    )
    app.state.context = context
    verifier = Verifier(context.store)
    guard = Guard(verifier, auth_required)
    problems.install(app)
    open_routes = _open_routes(verifier)
    app.include_router(open_routes)
    app.include_router(metrics_router(context.store, guard, metrics or MetricsOptions()))
    for prefix in PUBLIC_PREFIXES:
        app.include_router(open_routes, prefix=prefix)
        for router in (actors.router, jobs.router, own.router, notifications.router):
            app.include_router(router, prefix=prefix, dependencies=[Depends(guard)])
    app.include_router(config_api.open_router, prefix=CONFIG_PREFIX)
    app.include_router(config_api.router, prefix=CONFIG_PREFIX, dependencies=[Depends(guard)])
    problems.document(app)
    app.add_middleware(JsonBodyGuard)  # inside BodyLimit: what it reads is within the ceiling
    app.add_middleware(BodyLimit, max_bytes=int(context.service.settings.api_max_body_mb * (1 << 20)))
    app.middleware("http")(_access_line)  # added last: outermost, so its line tells of a 413 too
    return app


def _open_routes(verifier: Verifier) -> APIRouter:
    """Health and the token endpoint: no auth."""
    router = APIRouter(tags=["public"])

    @router.get("/health", response_class=PlainTextResponse)
    def health() -> str:
        return "Successful operation"

    @router.post("/applications/token", **ok(Token))
    async def token(request: Request) -> dict[str, Any]:
        fields = await _token_fields(request)
        app = verifier.check_secret(str(fields.get("client_id", "")), str(fields.get("client_secret", "")))
        if app is None:
            raise Problem(403, "unknown client_id or wrong client_secret", "forbidden")
        access_token, lifetime = verifier.issue_token(app)
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime}

    return router


async def _token_fields(request: Request) -> dict[str, Any]:
    """client_id and client_secret from a form (the SDK, Airflow) or JSON (dagster) body."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = loads(await request.body())
        except orjson.JSONDecodeError:
            raise Problem(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise Problem(400, "the body must be a JSON object with client_id and client_secret")
        return body
    return dict(await request.form())


async def _access_line(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """One line per request: method, path (no query string: it may carry a token), status, time."""
    start = time.perf_counter()
    response = await call_next(request)
    millis = (time.perf_counter() - start) * 1000
    client = request.client.host if request.client else "-"
    # The path as decoded holds what a client escaped into it (%1b: a terminal's ESC): shown, not obeyed.
    path = visible(request.url.path)
    line = f"{client} {request.method} {path} {response.status_code} {millis:.1f}ms"
    sys.stderr.write(line + "\n")
    return response
