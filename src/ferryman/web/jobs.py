"""Job pages: the list of every job, one job with its attempts, its live log (server-sent events)
and the log's download. Every log line is masked with the job's secret values on its way out."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated, BinaryIO

import anyio
from anyio import to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from ferryman.secrets import mask_text
from ferryman.store.base import Attempt, Job, NotFound
from ferryman.store.rows import MAX_ID
from ferryman.web import pages
from ferryman.web.app import Posted, SessionDep, Web, finish, redirect, render, web_of

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
READ_BYTES = 1 << 20  # of a log, per read while following it


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request, _: SessionDep, offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0
) -> Response:
    web = web_of(request)
    return render(
        request,
        "jobs.html",
        jobs=pages.job_page(web.service, None, offset, PAGE_SIZE),
        names=web.service.names(),
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: int, _: SessionDep) -> Response:
    web = web_of(request)
    try:
        view = pages.job_view(web.service, job_id)
    except NotFound as exc:
        return render(request, "message.html", 404, title="Not found", message=str(exc))
    return render(request, "job.html", view=view)


@router.post("/jobs/{job_id}/cancel")
def cancel(request: Request, job_id: int, _: Posted) -> Response:
    web = web_of(request)
    job = web.service.store.get_job(job_id, catalog=False)  # its status
    if job.status.terminal:
        return redirect(request, f"/jobs/{job.id}", ("error", f"Job {job.id} has ended: it {job.status}."))
    web.service.cancel(job.id)
    return redirect(request, f"/jobs/{job.id}", ("ok", f"Cancelling job {job.id}."))


@router.get("/jobs/{job_id}/log/stream")
def log_stream(
    request: Request,
    job_id: int,
    _: SessionDep,
    attempt: Annotated[int | None, Query(ge=0)] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    after: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Server-sent events: ``line`` for each new line of attempt ``attempt`` from byte ``offset``
    (without ``attempt``: of the first attempt numbered ``after`` or later, once the engine starts
    it), then one ``end`` with the attempt's (or job's) status."""
    web = web_of(request)
    job = web.service.store.get_job(job_id, catalog=False)  # its status, and its ends to mask
    secrets = web.service.job_secrets(job)
    stopping = getattr(request.app.state, "stopping", None) or (lambda: False)
    response = StreamingResponse(
        _events(web, job, attempt, offset, after, secrets, stopping),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )
    return finish(request, response)


# The stream is an async generator that waits with ``anyio.sleep`` and runs each store read or
# file read (all short) in a worker thread. A sync generator would sit in a worker thread while
# it waits for a quiet job, and keep it after the browser has gone (a thread cannot be
# cancelled): some forty reloads of a quiet job's page used up the thread pool that every page
# and the whole API share, and the server stopped answering until the job spoke again.
# Each wait also ends the stream when the server stops: a stop finishes the requests in flight
# first, and a job may stay pending for ever (the browser's EventSource tries again later).


class _ServerStopping(Exception):
    pass


async def _pause(web: Web, stopping: Callable[[], bool]) -> None:
    if stopping():
        raise _ServerStopping()
    await anyio.sleep(web.poll_s)


async def _wait_attempt(
    web: Web, job: Job, number: int | None, after: int, stopping: Callable[[], bool]
) -> Attempt | Job:
    """The attempt to follow once it exists, or the job if it ends without it."""
    while True:
        for found in await to_thread.run_sync(_attempts, web, job.id):
            if found.number == number or (number is None and found.number >= after):
                return found
        job = await to_thread.run_sync(_status, web, job.id)
        if job.status.terminal or number is not None:
            return job
        await _pause(web, stopping)


# A followed log looks at statuses only: a sync's catalog (its config) and its attempts' outputs
# (a state per stream) are megabytes at thousands of streams, and a page polls them every second.
def _attempts(web: Web, job_id: int) -> list[Attempt]:
    return web.service.store.list_attempts(job_id, outputs=False)


def _status(web: Web, job_id: int) -> Job:
    return web.service.store.get_job(job_id, catalog=False)


async def _events(
    web: Web,
    job: Job,
    number: int | None,
    offset: int,
    after: int,
    secrets: list[str],
    stopping: Callable[[], bool],
) -> AsyncIterator[str]:
    with contextlib.suppress(_ServerStopping):
        async for event in _job_events(web, job, number, offset, after, secrets, stopping):
            yield event


async def _job_events(
    web: Web,
    job: Job,
    number: int | None,
    offset: int,
    after: int,
    secrets: list[str],
    stopping: Callable[[], bool],
) -> AsyncIterator[str]:
    found = await _wait_attempt(web, job, number, after, stopping)
    if isinstance(found, Job):
        yield _event("end", json.dumps({"status": found.status.value}))
        return
    attempt = found

    def status() -> Attempt:
        for current in _attempts(web, attempt.job_id):
            if current.id == attempt.id:
                return current
        return attempt

    path = Path(attempt.log_path)
    latest = await to_thread.run_sync(status)
    while not await to_thread.run_sync(path.exists) and not latest.status.terminal:
        await _pause(web, stopping)
        latest = await to_thread.run_sync(status)
    if await to_thread.run_sync(path.exists):
        start = offset if number is not None else 0
        async for line in _follow(path, start, status, web, stopping):
            yield _event("line", mask_text(line, secrets))
        latest = await to_thread.run_sync(status)
    yield _event("end", json.dumps({"attempt": attempt.number, "status": latest.status.value}))


async def _follow(
    path: Path, start: int, status: Callable[[], Attempt], web: Web, stopping: Callable[[], bool]
) -> AsyncIterator[str]:
    """The lines of a growing log from byte ``start``, until the attempt has ended and nothing
    more arrives (as :func:`ferryman.logtail.follow`, without holding a thread while it waits)."""
    handle = await to_thread.run_sync(_open_binary, path)
    try:
        await to_thread.run_sync(handle.seek, start)
        pending, ended = b"", False
        while True:
            chunk = await to_thread.run_sync(handle.read, READ_BYTES)
            if chunk:
                if stopping():  # a chatty job too
                    raise _ServerStopping()
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", errors="replace")
            elif ended:
                return  # read once more after the attempt ended: its last lines are in
            else:
                ended = (await to_thread.run_sync(status)).status.terminal
                if not ended:
                    await _pause(web, stopping)
    finally:
        handle.close()


def _open_binary(path: Path) -> BinaryIO:
    return path.open("rb")


def _event(name: str, data: str) -> str:
    return f"event: {name}\n" + "".join(f"data: {line}\n" for line in data.splitlines() or [""]) + "\n"


@router.get("/jobs/{job_id}/attempts/{number}/log")
def download_log(request: Request, job_id: int, number: int, _: SessionDep) -> Response:
    """The whole log of one attempt, masked, as a text file."""
    web = web_of(request)
    job = web.service.store.get_job(job_id, catalog=False)  # its ends, to mask
    try:
        path = web.service.log_path(job.id, number)
    except (NotFound, ValueError) as exc:
        return render(request, "message.html", 404, title="No log", message=str(exc))
    secrets = web.service.job_secrets(job)
    headers = {"Content-Disposition": f'attachment; filename="ferryman-job-{job.id}-attempt-{number}.log"'}
    response = StreamingResponse(_masked_lines(path, secrets), media_type="text/plain", headers=headers)
    return finish(request, response)


def _masked_lines(path: Path, secrets: list[str]) -> Iterator[str]:
    if not path.exists():
        return
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            yield mask_text(line, secrets)
