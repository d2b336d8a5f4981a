"""Connection pages: the list, a new connection, one connection and what can be done to it."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from ferryman.errors import FerrymanError, UserInputError
from ferryman.protocol.catalog import StreamChoice
from ferryman.protocol.stream_refs import StreamRef, label
from ferryman.protocol.sync_modes import parse_mode
from ferryman.service import DESTINATION, SOURCE, ConnectionPlan
from ferryman.store.base import Actor, Connection, ConnectionBusy, Job, NotFound
from ferryman.store.rows import MAX_ID
from ferryman.web import pages, schedule
from ferryman.web.app import Posted, SessionDep, Web, redirect, render, web_of

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 20
FILTERS = ("", "ok", "failing", "running", "cancelled", "never", "active", "inactive")
DISCOVER_WAIT_S = 60.0


def _connection(web: Web, connection_id: int) -> Connection:
    return web.service.store.get_connection_by_id(connection_id)


@router.get("/", response_class=HTMLResponse)
def connections_page(request: Request, _: SessionDep, status: str = "") -> Response:
    web = web_of(request)
    wanted = status if status in FILTERS else ""
    rows = pages.connection_rows(web.service, wanted)
    return render(request, "connections.html", rows=rows, wanted=wanted, filters=FILTERS)


@router.get("/connections", response_class=HTMLResponse)
def connections_alias(request: Request, _: SessionDep) -> Response:
    return redirect(request, "/")


@router.get("/connections/new", response_class=HTMLResponse)
def new_connection_page(request: Request, _: SessionDep) -> Response:
    return _new_form(request, {}, "")


def _new_form(request: Request, values: dict[str, str], error: str, status: int = 200) -> Response:
    store = web_of(request).service.store
    return render(
        request,
        "connection_new.html",
        status,
        sources=store.list_actors(SOURCE),
        destinations=store.list_actors(DESTINATION),
        values=values,
        error=error,
    )


@router.post("/connections/new", response_class=HTMLResponse)
def create_connection(request: Request, form: Posted) -> Response:
    web = web_of(request)
    store = web.service.store
    try:
        source = store.get_actor_by_id(SOURCE, _chosen(form, "source"))
        destination = store.get_actor_by_id(DESTINATION, _chosen(form, "destination"))
        name = form.get("name", "").strip() or f"{source.name} → {destination.name}"
        catalog = _catalog(web, source)
        if catalog is None:
            return _new_form(
                request,
                form,
                f"The streams of {source.name} are still being discovered: send the form again in a moment.",
                409,
            )
        conn = web.service.connect(name, source, destination, catalog, ConnectionPlan())
    except (FerrymanError, ValueError) as exc:
        return _new_form(request, form, _line(exc), 422)
    return redirect(request, f"/connections/{conn.id}", ("ok", f"Connection {conn.name} created."))


def _chosen(form: dict[str, str], field: str) -> int:
    """The id the form's select sent for ``field`` (0, which no actor has, when none was chosen)."""
    value = form.get(field, "").strip() or "0"
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise UserInputError(f"choose a {field} from the list (got {value[:40]!r})")
    return int(value)


def _catalog(web: Web, source: Actor) -> dict[str, Any] | None:
    """The source's discovered streams: the newest discover that fits its config, else one run now
    and waited for a while (as the API does); None while it still runs."""
    found = web.service.latest_catalog(source)
    if found is not None:
        return found
    job = web.service.discover_job(source)
    deadline = time.monotonic() + DISCOVER_WAIT_S
    while not job.status.terminal and time.monotonic() < deadline:
        time.sleep(web.poll_s)
        job = web.service.store.get_job(job.id)
    found = web.service.latest_catalog(source)
    if found is None and job.status.terminal:
        raise UserInputError(f"the discover of source {source.name!r} {job.status.value} (job {job.id})")
    return found


@router.get("/connections/{connection_id}", response_class=HTMLResponse)
def connection_page(
    request: Request, connection_id: int, _: SessionDep, offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0
) -> Response:
    web = web_of(request)
    try:
        conn = _connection(web, connection_id)
    except NotFound as exc:
        return render(request, "message.html", 404, title="Not found", message=str(exc))
    store = web.service.store
    source = store.get_actor_by_id(SOURCE, conn.source_id)
    destination = store.get_actor_by_id(DESTINATION, conn.destination_id)
    units, unit = schedule.basic_parts(conn.schedule)
    cron_expression, cron_timezone = schedule.cron_parts(conn.schedule)
    return render(
        request,
        "connection.html",
        conn=conn,
        source=source,
        destination=destination,
        streams=pages.stream_rows(web.service, conn, destination),
        schedule=conn.schedule or {"scheduleType": "manual"},
        schedule_text=schedule.describe(conn.schedule),
        basic_units=units,
        basic_unit=unit,
        cron_expression=cron_expression,
        cron_timezone=cron_timezone,
        units=schedule.BASIC_UNITS,
        next_run=schedule.next_run(conn),
        state=pages.state_text(web.service, conn, source, destination),
        jobs=pages.job_page(web.service, str(conn.id), offset, PAGE_SIZE),
        live=pages.live_job(web.service, conn),
        health=pages.health(conn, _last(web, conn)),
        health_labels=pages.HEALTH_LABELS,
    )


def _last(web: Web, conn: Connection) -> Job | None:
    found = pages.job_page(web.service, str(conn.id), 0, 1).rows
    return found[0].job if found else None


def _back(conn_id: int) -> str:
    return f"/connections/{conn_id}"


@router.post("/connections/{connection_id}/sync")
def sync_now(request: Request, connection_id: int, _: Posted) -> Response:
    return _replicate(request, connection_id, reset=False)


@router.get("/connections/{connection_id}/reset", response_class=HTMLResponse)
def confirm_reset(request: Request, connection_id: int, _: SessionDep) -> Response:
    conn = _connection(web_of(request), connection_id)
    return render(
        request,
        "confirm.html",
        title=f"Reset {conn.name}?",
        message="A reset empties the destination's tables of this connection's streams and clears "
        "its state: the next sync reads everything again.",
        action=f"/connections/{conn.id}/reset",
        button="Reset",
        back=_back(conn.id),
    )


@router.post("/connections/{connection_id}/reset")
def reset(request: Request, connection_id: int, _: Posted) -> Response:
    return _replicate(request, connection_id, reset=True)


def _replicate(request: Request, connection_id: int, reset: bool) -> Response:
    web = web_of(request)
    conn = _connection(web, connection_id)
    try:
        job = web.service.enqueue_replication(conn, reset=reset)
    except ConnectionBusy as busy:
        return redirect(request, _back(conn.id), ("error", _line(busy)))
    except NotFound as gone:  # deleted meanwhile: its page is gone too
        return redirect(request, "/connections", ("error", _line(gone)))
    return redirect(
        request, f"/jobs/{job.id}", ("ok", f"{'Reset' if reset else 'Sync'} job {job.id} queued.")
    )


@router.post("/connections/{connection_id}/status")
def set_status(request: Request, connection_id: int, form: Posted) -> Response:
    web = web_of(request)
    conn = _connection(web, connection_id)
    wanted = "inactive" if form.get("status") == "inactive" else "active"
    web.service.update_connection(conn, status=wanted)
    text = "enabled" if wanted == "active" else "disabled"
    return redirect(request, _back(conn.id), ("ok", f"Connection {text}."))


@router.post("/connections/{connection_id}/schedule")
def set_schedule(request: Request, connection_id: int, form: Posted) -> Response:
    web = web_of(request)
    conn = _connection(web, connection_id)
    try:
        wanted = schedule.from_form(form)
    except UserInputError as exc:
        return redirect(request, _back(conn.id) + "#schedule", ("error", _line(exc)))
    web.service.update_connection(conn, schedule=wanted)
    return redirect(request, _back(conn.id) + "#schedule", ("ok", f"Schedule: {wanted.describe()}."))


@router.post("/connections/{connection_id}/streams")
def set_streams(request: Request, connection_id: int, form: Posted) -> Response:
    web = web_of(request)
    conn = _connection(web, connection_id)
    choices = []
    try:
        for configured in conn.catalog.get("streams", []):
            namespace, name = configured["stream"].get("namespace"), configured["stream"]["name"]
            wanted = form.get(pages.mode_field(namespace, name))
            if wanted and wanted != f"{configured['sync_mode']}:{configured['destination_sync_mode']}":
                choices.append(StreamChoice(StreamRef.named(name, namespace, exact=True), parse_mode(wanted)))
        if not choices:
            return redirect(request, _back(conn.id) + "#streams", ("ok", "No stream changed."))
        web.service.update_streams(conn, choices)
    except (FerrymanError, ValueError) as exc:
        return redirect(request, _back(conn.id) + "#streams", ("error", _line(exc)))
    names = ", ".join(label(choice.stream.namespace, choice.stream.name) for choice in choices)
    return redirect(request, _back(conn.id) + "#streams", ("ok", f"Sync modes saved ({names})."))


@router.get("/connections/{connection_id}/state/clear", response_class=HTMLResponse)
def confirm_clear_state(request: Request, connection_id: int, _: SessionDep) -> Response:
    conn = _connection(web_of(request), connection_id)
    return render(
        request,
        "confirm.html",
        title=f"Clear the state of {conn.name}?",
        message="The next sync starts from nothing: incremental streams read everything again "
        "(the destination's tables are kept).",
        action=f"/connections/{conn.id}/state/clear",
        button="Clear state",
        back=_back(conn.id) + "#state",
    )


@router.post("/connections/{connection_id}/state/clear")
def clear_state(request: Request, connection_id: int, _: Posted) -> Response:
    web = web_of(request)
    conn = _connection(web, connection_id)
    try:
        web.service.clear_state(conn)
    except UserInputError as exc:
        return redirect(request, _back(conn.id) + "#state", ("error", _line(exc)))
    return redirect(request, _back(conn.id) + "#state", ("ok", "State cleared."))


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
