"""Source and destination pages: the lists, a "new" form made from the connector's spec, one
actor (its masked config, its connections, its last connection test), "Test connection", and
"Edit": the same form filled with the stored config, where a secret left empty keeps its value."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from ferryman.errors import FerrymanError
from ferryman.secrets import MASK, SecretRules, mask_text, secret_values
from ferryman.store.base import Actor, NotFound
from ferryman.store.rows import MAX_ID
from ferryman.web import forms, pages
from ferryman.web.app import Posted, SessionDep, Web, redirect, render, web_of

router = APIRouter(include_in_schema=False)
KINDS = {"sources": "source", "destinations": "destination"}


def _kind(plural: str) -> str:
    return KINDS[plural]


def _actor(web: Web, kind: str, actor_id: int) -> Actor:
    return web.service.store.get_actor_by_id(kind, actor_id)


def actors_page(request: Request, _: SessionDep) -> Response:
    plural = _plural(request)
    web = web_of(request)
    kind = _kind(plural)
    actors = web.service.store.list_actors(kind)
    used = pages.connection_counts(web.service, kind)
    return render(request, "actors.html", kind=kind, plural=plural, actors=actors, used=used)


def new_actor_page(request: Request, _: SessionDep, connector: str = "") -> Response:
    """The form of a listed connector (built in, or added as a definition); any other reference
    only fills in the pick page. Reading a spec runs the connector, and may install it first: a
    GET, which another site's page can make (an image is enough), must not run a program or
    install a package of its choosing. Typed references are read by the POST below."""
    plural = _plural(request)
    kind = _kind(plural)
    web = web_of(request)
    definitions = web.service.store.list_definitions(kind)
    if connector and connector.strip() in {d.connector for d in definitions}:
        return _form(request, kind, plural, connector.strip(), None, "")
    return _pick(request, kind, plural, connector.strip())


def _pick(
    request: Request, kind: str, plural: str, reference: str = "", error: str = "", status: int = 200
) -> Response:
    definitions = web_of(request).service.store.list_definitions(kind)
    return render(
        request, "actor_pick.html", status, kind=kind, plural=plural, definitions=definitions,
        reference=reference, error=error,
    )  # fmt: skip


def pick_connector(request: Request, form: Posted) -> Response:
    """The form of a typed connector reference (installing the connector first if need be)."""
    plural = _plural(request)
    return _form(request, _kind(plural), plural, form.get("connector", "").strip(), None, "")


def _form(
    request: Request,
    kind: str,
    plural: str,
    connector: str,
    posted: dict[str, str] | None,
    error: str,
    status: int = 200,
) -> Response:
    web = web_of(request)
    try:
        spec = web.service.fetch_spec(connector)
    except (FerrymanError, ValueError) as exc:
        return _pick(request, kind, plural, connector, _line(exc), 422)
    root = forms.build(pages.spec_schema(spec))
    secret_names = set(forms.secret_inputs(root))
    shown = None if posted is None else {k: v for k, v in posted.items() if k not in secret_names}
    return render(
        request,
        "actor_new.html",
        status,
        kind=kind,
        plural=plural,
        connector=connector,
        root=root,
        posted=shown,
        name=(posted or {}).get("name", ""),
        error=error,
        spec_failed=spec is None,
        actor=None,
        stored_secrets=(),
    )


def create_actor(request: Request, form: Posted) -> Response:
    plural = _plural(request)
    kind = _kind(plural)
    web = web_of(request)
    connector = form.get("connector", "").strip()
    try:
        spec = web.service.fetch_spec(connector)
    except (FerrymanError, ValueError) as exc:
        return _form(request, kind, plural, connector, form, _line(exc), 422)
    root = forms.build(pages.spec_schema(spec))
    config, errors = forms.read(root, form)
    name = form.get("name", "").strip()
    if not name:
        errors.insert(0, "Name is required")
    if errors:
        return _form(request, kind, plural, connector, form, "; ".join(errors), 422)
    try:
        actor = web.service.create_actor(kind, name, connector, config)
    except (FerrymanError, ValueError) as exc:
        # The message may quote what was typed: mask the secrets of this config in it.
        typed = secret_values(config, SecretRules.of(spec, config))
        return _form(request, kind, plural, connector, form, mask_text(_line(exc), typed), 422)
    if form.get("test") == "1":
        job = web.service.enqueue_check(actor)
        return redirect(request, f"/jobs/{job.id}", ("ok", f"{kind.title()} {actor.name} saved; testing it."))
    return redirect(request, f"/{plural}/{actor.id}", ("ok", f"{kind.title()} {actor.name} created."))


def actor_page(
    request: Request, actor_id: int, _: SessionDep, offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0
) -> Response:
    plural = _plural(request)
    web = web_of(request)
    try:
        kind = _kind(plural)
        actor = _actor(web, kind, actor_id)
    except NotFound as exc:
        return render(request, "message.html", 404, title="Not found", message=str(exc))
    return render(
        request,
        "actor.html",
        kind=kind,
        plural=plural,
        actor=actor,
        config=pages.config_text(actor),
        connections=pages.actor_connections(web.service, actor),
        check=pages.last_check(web.service, actor),
        jobs=pages.job_page(web.service, f"{kind}:{actor.id}", offset, 10),
    )


def edit_actor_page(request: Request, actor_id: int, _: SessionDep) -> Response:
    actor = _found(request, actor_id)
    return actor if isinstance(actor, Response) else _edit_form(request, actor, None, "")


def _found(request: Request, actor_id: int) -> Actor | Response:
    """The source or destination the path names, or the page saying there is none."""
    try:
        return _actor(web_of(request), _kind(_plural(request)), actor_id)
    except NotFound as exc:
        return render(request, "message.html", 404, title="Not found", message=str(exc))


def _edit_form(
    request: Request, actor: Actor, posted: dict[str, str] | None, error: str, status: int = 200
) -> Response:
    web = web_of(request)
    root = forms.build(pages.spec_schema(_spec(web, actor)))
    secret_names = set(forms.secret_inputs(root))
    stored = forms.fill(root, web.service.masked_config(actor))
    shown = stored if posted is None else {k: v for k, v in posted.items() if k not in secret_names}
    return render(
        request,
        "actor_new.html",
        status,
        kind=actor.kind,
        plural=_plural(request),
        connector=actor.connector,
        root=root,
        posted=shown,
        name=actor.name if posted is None else posted.get("name", ""),
        error=error,
        spec_failed=not root.children,
        actor=actor,
        stored_secrets={name for name in secret_names if stored.get(name) == MASK},
    )


def edit_actor(request: Request, actor_id: int, form: Posted) -> Response:
    plural = _plural(request)
    web = web_of(request)
    actor = _found(request, actor_id)
    if isinstance(actor, Response):
        return actor
    root = forms.build(pages.spec_schema(_spec(web, actor)))
    stored = forms.fill(root, web.service.masked_config(actor))
    config, errors = forms.read(root, forms.keep_secrets(root, form, stored))
    name = form.get("name", "").strip()
    if not name:
        errors.insert(0, "Name is required")
    if errors:
        return _edit_form(request, actor, form, "; ".join(errors), 422)
    config = forms.keep_unshown(root, config, actor.config)
    try:
        actor = web.service.update_actor(actor, name=name, config=config)
    except (FerrymanError, ValueError) as exc:
        typed = secret_values(config, SecretRules.of(actor.spec, config))
        return _edit_form(request, actor, form, mask_text(_line(exc), typed), 422)
    if form.get("test") == "1":
        job = web.service.enqueue_check(actor)
        return redirect(
            request, f"/jobs/{job.id}", ("ok", f"{actor.kind.title()} {actor.name} saved; testing it.")
        )
    return redirect(request, f"/{plural}/{actor.id}", ("ok", f"{actor.kind.title()} {actor.name} saved."))


def _spec(web: Web, actor: Actor) -> dict[str, Any] | None:
    """The spec the actor was created with, else the connector's (None if it cannot be read)."""
    if actor.spec is not None:
        return actor.spec
    try:
        return web.service.fetch_spec(actor.connector)
    except (FerrymanError, ValueError):
        return None


def check_actor(request: Request, actor_id: int, _: Posted) -> Response:
    plural = _plural(request)
    web = web_of(request)
    actor = _actor(web, _kind(plural), actor_id)
    job = web.service.enqueue_check(actor)
    return redirect(request, f"/jobs/{job.id}", ("ok", f"Testing {actor.kind} {actor.name}."))


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _plural(request: Request) -> str:
    """``sources`` or ``destinations``: the first part of the path (each route is registered
    under both)."""
    return request.url.path.split("/")[1]


for _plural_name in KINDS:
    _base = f"/{_plural_name}"
    router.add_api_route(_base, actors_page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route(_base + "/new", new_actor_page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route(_base + "/new", create_actor, methods=["POST"], response_class=HTMLResponse)
    router.add_api_route(
        _base + "/new/connector", pick_connector, methods=["POST"], response_class=HTMLResponse
    )
    router.add_api_route(_base + "/{actor_id}", actor_page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route(_base + "/{actor_id}/check", check_actor, methods=["POST"])
    router.add_api_route(
        _base + "/{actor_id}/edit", edit_actor_page, methods=["GET"], response_class=HTMLResponse
    )
    router.add_api_route(
        _base + "/{actor_id}/edit", edit_actor, methods=["POST"], response_class=HTMLResponse
    )
