"""A page of jobs costs the same however many jobs the store holds (SQLite, the embedded store).

`GET /v1/jobs` lists syncs and resets by creation time, 20 at a time. SQLite without statistics
used the type index for that filter and read and sorted every sync to return 20: 0.12 s at
100,000 jobs (a few days of 200 connections every minute), growing with each job. The work is
counted in SQLite's virtual machine steps (its progress handler), which are the same on every
run, so the test needs no clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ferryman.jobs.states import JobType
from ferryman.store import SqlJobStore, open_store
from ferryman.store.base import JobQuery
from ferryman.store.schema import jobs
from tests.contract.store_support import T0

STEPS_PER_CALL = 100
PAGES = {
    "GET /v1/jobs": JobQuery(types=(JobType.SYNC, JobType.RESET)),
    "GET /v1/jobs?jobType=sync, newest first": JobQuery(
        types=(JobType.SYNC,), order_by="created_at", descending=True
    ),
    "ferryman jobs list --type sync": JobQuery(types=(JobType.SYNC,), order_by="id", descending=True),
}


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlJobStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'ferryman.db'}")
    try:
        yield opened
    finally:
        opened.close()


def add_finished_syncs(store: SqlJobStore, count: int) -> None:
    """``count`` more succeeded syncs of 50 connections, a minute apart, as a scheduler leaves them."""
    with store.engine.begin() as db:
        start = db.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one()
        made = [
            {
                "type": "sync",
                "scope": str(n % 50 + 1),
                "config": {"streams": ["x" * 200]},
                "status": "succeeded",
                "created_at": T0 + timedelta(minutes=n),
                "updated_at": T0 + timedelta(minutes=n, seconds=5),
                "cancel_requested": False,
                "scheduled_for": T0 + timedelta(minutes=n),
            }
            for n in range(start, start + count)
        ]
        db.execute(jobs.insert(), made)


def steps(store: SqlJobStore, query: JobQuery) -> int:
    """SQLite's VM steps (in units of STEPS_PER_CALL) to read one page."""
    counted = [0]

    def count() -> int:
        counted[0] += 1
        return 0  # go on

    def hook(db: Any, *_: Any) -> None:
        db.connection.dbapi_connection.set_progress_handler(count, STEPS_PER_CALL)

    sa.event.listen(store.engine, "before_cursor_execute", hook)
    try:
        page = store.page_jobs(query)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", hook)
    assert len(page) == query.limit
    return counted[0]


@pytest.mark.parametrize("name", list(PAGES))
def test_a_page_of_syncs_does_not_cost_more_with_more_jobs(sqlite_store: SqlJobStore, name: str) -> None:
    query = PAGES[name]
    add_finished_syncs(sqlite_store, 200)
    few = steps(sqlite_store, query)
    add_finished_syncs(sqlite_store, 3_800)
    many = steps(sqlite_store, query)
    assert many <= few + 5, f"{name}: {few} units of work at 200 jobs, {many} at 4,000"
