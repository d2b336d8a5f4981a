"""The web UI on the server's FastAPI app: sessions, CSRF, rendering, login and logout.

:func:`mount` adds the pages at ``/`` (the API keeps ``/v1``, ``/api``, ``/health``), its static
files at ``/static``. Pages need a session cookie (see :mod:`ferryman.web.session`); when the
server asks for credentials, a session is only had by logging in with an application's client
id and secret, checked exactly as the API checks basic auth (:class:`ferryman.credentials.Verifier`).
Deleting the application ends its sessions at their next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ferryman.credentials import Verifier
from ferryman.service import JobService
from ferryman.web import filters
from ferryman.web.session import (
    COOKIE,
    ENDED_FILE,
    FLASH_COOKIE,
    LIFETIME_S,
    EndedSessions,
    Session,
    Signer,
    load_key,
)

HERE = Path(__file__).parent
FLASH_MAX_CHARS = 1500  # a cookie holds about 4 kB
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass
class Web:
    service: JobService
    verifier: Verifier
    required: bool
    signer: Signer
    templates: jinja2.Environment
    poll_s: float = 0.25


class LoginNeeded(Exception):
    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


class FormRefused(Exception):
    """A POST without the session's CSRF token, or from another origin."""


def mount(app: FastAPI, service: JobService, required: bool, verifier: Verifier | None = None) -> None:
    """Serve the UI from ``app``, over ``service``, asking for a login when ``required``."""
    from ferryman.web import actors, connections, jobs

    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters.install(templates)
    home = service.settings.home
    signer = Signer(load_key(home), EndedSessions(home / ENDED_FILE))
    app.state.web = Web(service, verifier or Verifier(service.store), required, signer, templates)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(_login_routes())
    for module in (connections, jobs, actors):
        app.include_router(module.router)

    @app.exception_handler(LoginNeeded)
    async def _login(request: Request, exc: LoginNeeded) -> Response:
        return finish(request, RedirectResponse(f"/login?next={quote(exc.target)}", 303))

    @app.exception_handler(FormRefused)
    async def _refused(request: Request, exc: FormRefused) -> Response:
        return render(
            request,
            "message.html",
            403,
            title="Form refused",
            message="This form has expired or did not come from this site. Go back, reload the page and "
            "try again.",
        )


_ERROR_TITLES = {
    404: "Not found",
    405: "Not allowed",
    409: "Not now",
    422: "Cannot do that",
    503: "The store is unavailable",
}


def error_page(request: Request, status: int, detail: str) -> Response:
    """An error of a web page as a page (the API answers problem+json): its one-line detail."""
    title = _ERROR_TITLES.get(status, "Something went wrong" if status >= 500 else "Cannot do that")
    return render(request, "message.html", status, title=title, message=detail)


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def current_session(request: Request) -> Session:
    """The request's session; a new one when it has none and none is needed, else to the login."""
    web = web_of(request)
    session = web.signer.load(request.cookies.get(COOKIE))
    if (
        session is not None
        and session.logged_in
        and web.verifier.store.get_application(session.client_id) is None
    ):
        session = None  # the application was deleted: its sessions end with it
    if session is None or (web.required and not session.logged_in):
        if web.required:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginNeeded(target)
        session = web.signer.new_session()
        request.state.new_session = session
    request.state.session = session
    return session


SessionDep = Annotated[Session, Depends(current_session)]
# A connection's form holds one field per stream, and sources of thousands of tables are common:
# Starlette's default (1,000 fields) refused such a form. The body's size limit bounds it anyway.
MAX_FORM_FIELDS = 1_000_000


async def posted_form(request: Request) -> dict[str, str]:
    """A POSTed form, once its CSRF token and origin are checked."""
    session = current_session(request)
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise FormRefused()
    form = await request.form(max_fields=MAX_FORM_FIELDS)
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    if not web_of(request).signer.csrf_ok(session, values.pop("csrf", None)):
        raise FormRefused()
    return values


Posted = Annotated[dict[str, str], Depends(posted_form)]


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    web = web_of(request)
    session: Session | None = getattr(request.state, "session", None)
    flash = web.signer.load_flash(request.cookies.get(FLASH_COOKIE))
    html = web.templates.get_template(template).render(
        csrf=web.signer.csrf_token(session) if session else "",
        session=session,
        required=web.required,
        flash=flash,
        path=request.url.path,
        now=datetime.now().astimezone(),
        **context,
    )
    response = HTMLResponse(html, status)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    finish(request, response)
    return response


def redirect(request: Request, target: str, flash: tuple[str, str] | None = None) -> Response:
    """303 to ``target`` (a path of this site), with a message for the next page."""
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    response = RedirectResponse(target, 303)
    if flash is not None:
        kind, text = flash
        value = web_of(request).signer.dump_flash(kind, text[:FLASH_MAX_CHARS])
        response.set_cookie(
            FLASH_COOKIE, value, httponly=True, samesite="lax", path="/", secure=_secure(request)
        )
    return finish(request, response)


def finish(request: Request, response: Response) -> Response:
    """The session cookie when one was made for this request, and the security headers."""
    new: Session | None = getattr(request.state, "new_session", None)
    if new is not None:
        set_session(request, response, new)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def set_session(request: Request, response: Response, session: Session) -> None:
    value = web_of(request).signer.dump(session)
    response.set_cookie(
        COOKIE, value, max_age=LIFETIME_S, httponly=True, samesite="lax", path="/", secure=_secure(request)
    )


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


# -- login ---------------------------------------------------------------------------------------


def _login_routes() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> Response:
        web = web_of(request)
        session = web.signer.load(request.cookies.get(COOKIE))
        if session is not None and (session.logged_in or not web.required):
            return redirect(request, next)
        request.state.session = session or web.signer.new_session()
        if session is None:
            request.state.new_session = request.state.session
        return render(request, "login.html", target=next, error="", client_id="")

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        web = web_of(request)
        session = web.signer.load(request.cookies.get(COOKIE))
        form = await request.form()
        values = {key: value for key, value in form.items() if isinstance(value, str)}
        if session is None or not web.signer.csrf_ok(session, values.get("csrf")):
            raise FormRefused()
        request.state.session = session
        target = values.get("next") or "/"
        client_id = values.get("client_id", "").strip()
        app = web.verifier.check_secret(client_id, values.get("client_secret", ""))
        if app is None:
            return render(
                request, "login.html", 401, target=target, error="Unknown client id or wrong secret.",
                client_id=client_id,
            )  # fmt: skip
        request.state.new_session = web.signer.new_session(app.client_id)  # a new id at login
        request.state.session = request.state.new_session
        return redirect(request, target)

    @router.post("/logout")
    def logout(request: Request, _: Posted) -> Response:
        web_of(request).signer.end(request.state.session)  # a copy of the cookie ends with it
        response = redirect(request, "/login")
        response.delete_cookie(COOKIE, path="/")
        return response

    return router
