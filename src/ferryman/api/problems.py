"""Errors as Airbyte's API sends them: RFC 7807 problems (``application/problem+json``).

Only the status class matters to the clients (none parses the body), but the body says what
went wrong in one line, with no secret and no traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from ferryman.errors import EngineUnavailable, StoreUnavailable, first_line
from ferryman.store.base import AlreadyExists, ConnectionBusy, NotFound, StaleWrite

DOCS = "https://reference.airbyte.com/reference/errors"
log = logging.getLogger("ferryman.api")
_TITLES = {
    400: "bad-request",
    401: "invalid-api-key",
    403: "forbidden",
    404: "resource-not-found",
    405: "method-not-allowed",
    409: "state-conflict",
    413: "payload-too-large",
    422: "unprocessable-entity",
    503: "service-unavailable",
}


class Problem(Exception):
    """An error response: its status, a slug title, and the detail a person reads."""

    def __init__(self, status: int, detail: str, title: str | None = None, **data: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _TITLES.get(status, "unexpected-problem")
        self.data = data


def problem_response(problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {
        "status": problem.status,
        "type": f"{DOCS}#{problem.title}",
        "title": problem.title,
        "detail": problem.detail,
    }
    if problem.data:
        body["data"] = problem.data
    headers = {"WWW-Authenticate": "Bearer"} if problem.status == 401 else None
    return JSONResponse(body, problem.status, headers=headers, media_type="application/problem+json")


# Paths that are the API's (or machine-read): their errors are always problem+json.
_API_PATHS = ("/v1", "/api/", "/applications/", "/health", "/metrics", "/openapi.json", "/docs", "/redoc")

ProblemPage = Callable[[Request, int, str], Response]  # (request, status, detail)


def serve_pages_for_problems(app: FastAPI, page: ProblemPage) -> None:
    """Answer the errors of the web UI's paths (everything outside ``_API_PATHS``) with
    ``page``, an HTML page, rather than problem+json: what a browser shows its user."""
    app.state.problem_page = page


def _respond(request: Request, problem: Problem) -> Response:
    page: ProblemPage | None = getattr(request.app.state, "problem_page", None)
    path = request.url.path
    if page is not None and not any(path == p.rstrip("/") or path.startswith(p) for p in _API_PATHS):
        return page(request, problem.status, problem.detail)
    return problem_response(problem)


def install(app: FastAPI) -> None:
    """Every error the app can meet, as a problem."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return _respond(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return _respond(request, Problem(422, _first_error(exc, request.headers.get("content-type", ""))))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return _respond(request, Problem(exc.status_code, str(exc.detail)))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return _respond(request, Problem(404, str(exc)))

    @app.exception_handler(ConnectionBusy)
    async def _busy(request: Request, exc: ConnectionBusy) -> Response:
        return _respond(request, Problem(409, str(exc), "try-again-later"))

    @app.exception_handler(StaleWrite)  # a compare-and-set lost every try: others keep writing
    async def _stale(request: Request, exc: StaleWrite) -> Response:
        return _respond(request, Problem(409, str(exc), "try-again-later"))

    @app.exception_handler(AlreadyExists)
    async def _exists(request: Request, exc: AlreadyExists) -> Response:
        return _respond(request, Problem(409, str(exc)))

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request: Request, exc: StoreUnavailable) -> Response:
        # The database went away: the client may try again, and the server lives on (its
        # engine backs off the same way). The reason goes to the log, not to the client.
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        response = _respond(request, Problem(503, "the store cannot be used right now; try again shortly"))
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(EngineUnavailable)
    async def _engine_down(request: Request, exc: EngineUnavailable) -> Response:
        # Temporal refused or did not answer a job this request waits for: the job stays queued
        # (the workers' sweep starts it), and the client may ask again. The line names Temporal's
        # address and the reason, nothing of a config.
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        response = _respond(request, Problem(503, first_line(exc, 500)))
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(ValueError)  # UserInputError and the like: the request is at fault
    async def _bad_input(request: Request, exc: ValueError) -> Response:
        return _respond(request, Problem(422, str(exc).strip().splitlines()[0][:500]))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        return _respond(request, Problem(500, "the server met an unexpected problem; see its log"))


def _first_error(exc: RequestValidationError, content_type: str) -> str:
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    first = errors[0]
    if tuple(first.get("loc", ())) == ("body",):  # no object at all: what was sent, and how
        sent = content_type.split(";")[0].strip().lower()
        if sent != "application/json":
            return (
                f"the body must be a JSON object sent as Content-Type: application/json, not {sent or 'none'}"
            )
        return "the body must be a JSON object"
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))


def document(app: FastAPI) -> None:
    """Declare in ``/openapi.json`` that every route may answer a 4xx problem+json, and replace
    FastAPI's own 422 body (ours is a problem too)."""
    from fastapi.openapi.utils import get_openapi

    from ferryman.api.models import ProblemDetail

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["ProblemDetail"] = ProblemDetail.model_json_schema()
        problem = {
            "description": "An error, as application/problem+json",
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetail"}}
            },
        }
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for code in [c for c in responses if c.startswith(("4", "5"))]:
                    del responses[code]
                responses["4XX"] = problem
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
