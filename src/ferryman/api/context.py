"""What every route needs: the store, the job service, the server's options, and pages."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request

from ferryman.api.documents import Lookups
from ferryman.api.problems import Problem
from ferryman.service import JobService
from ferryman.store.base import Job, JobStore
from ferryman.store.rows import MAX_ID

T = TypeVar("T")
CANCEL_WAIT_S = 10.0  # how long a cancel waits for the engine to stop the job before answering


@dataclass
class ApiContext:
    service: JobService
    discover_wait_s: float = 30.0
    poll_s: float = 0.2

    @property
    def store(self) -> JobStore:
        return self.service.store

    def lookups(self) -> Lookups:
        return Lookups(self.store)

    def wait_for(self, job: Job, seconds: float) -> Job:
        """The job once it has ended, or as it is after ``seconds``."""
        deadline = time.monotonic() + seconds
        while not job.status.terminal and time.monotonic() < deadline:
            time.sleep(self.poll_s)
            job = self.store.get_job(job.id, catalog=False)  # its status, and its ends to mask
        return job


def api_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


Context = Annotated[ApiContext, Depends(api_context)]
Limit = Annotated[int, Query(ge=1, le=100)]
# An offset past 2^63 - 1 cannot reach the database (OverflowError); there is nothing there anyway.
Offset = Annotated[int, Query(ge=0, le=MAX_ID)]


def id_list(values: list[str] | None) -> list[str]:
    """``workspaceIds``, repeated (as the SDK sends it) or comma-joined (as Airbyte's links do)."""
    return [part.strip().lower() for value in values or [] for part in value.split(",") if part.strip()]


def check_workspaces(context: ApiContext, workspace_ids: list[str] | None) -> bool:
    """Whether the listing includes the one workspace."""
    wanted = id_list(workspace_ids)
    return not wanted or context.store.default_workspace().uuid in wanted


def page(
    request: Request,
    items: Sequence[T] | Callable[[int, int], Sequence[T]],
    limit: int,
    offset: int,
    doc: Callable[[T], dict[str, Any]],
) -> dict[str, Any]:
    """One page and its links. ``next`` only when one more item exists, so it never leads to an
    empty page (dagster follows ``next`` until it is missing)."""
    fetched = items(limit + 1, offset) if callable(items) else items[offset : offset + limit + 1]
    result: dict[str, Any] = {"data": [doc(item) for item in fetched[:limit]]}
    if len(fetched) > limit:
        result["next"] = str(request.url.include_query_params(limit=limit, offset=offset + limit))
    if offset > 0:
        result["previous"] = str(request.url.include_query_params(limit=limit, offset=max(offset - limit, 0)))
    return result


def not_found(kind: str, ident: str) -> Problem:
    return Problem(404, f"no {kind} with id {ident}", resourceId=ident, resourceType=kind)
