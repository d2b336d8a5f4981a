"""Jobs listed by last change (``GET /v1/jobs?orderBy=updatedAt|DESC``, as orchestrators poll) are
read off the ``(updated_at, id)`` index of migration 0010, on every store; a store from before it
is upgraded with its jobs kept."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from alembic import command

from ferryman.jobs.states import JobStatus, JobType
from ferryman.store import SqlJobStore, open_store
from ferryman.store.base import JobQuery
from ferryman.store.migrate import alembic_config, current_revision, head_revision
from tests.contract.store_support import T0, store, store_url

__all__ = ["store", "store_url"]

INDEX = "ix_jobs_updated_at_id"
BY_UPDATE = JobQuery(order_by="updated_at", descending=True, limit=20)


def _jobs_changed_in_turn(store: SqlJobStore, count: int) -> list[int]:
    """``count`` checks, each changed a minute after the one before it, whatever their ids: the
    order by last change is the reverse of the order they were queued in."""
    made = [store.enqueue(JobType.CHECK_SOURCE, f"source:{n}", {}).id for n in range(count)]
    with store.engine.begin() as conn:
        for turn, job_id in enumerate(reversed(made)):
            conn.execute(
                sa.text("UPDATE jobs SET updated_at = :at WHERE id = :id"),
                {"at": (T0 + timedelta(minutes=turn)).replace(tzinfo=None), "id": job_id},
            )
    return made


def _index_names(store: SqlJobStore) -> set[str]:
    return {index["name"] for index in sa.inspect(store.engine).get_indexes("jobs")}


def test_a_store_from_before_the_index_gets_it_and_keeps_its_jobs(store_url: str) -> None:
    with open_store(store_url) as fresh:
        made = _jobs_changed_in_turn(fresh, 3)
        config = alembic_config()
        with fresh.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0009")
        assert INDEX not in _index_names(fresh)
    with open_store(store_url) as upgraded:
        with upgraded.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
        assert INDEX in _index_names(upgraded)
        assert [job.id for job in upgraded.page_jobs(BY_UPDATE)] == made  # the last changed first
        assert {job.status for job in upgraded.page_jobs(BY_UPDATE)} == {JobStatus.PENDING}


def test_a_page_by_last_change_walks_the_index_and_sorts_nothing(store: SqlJobStore) -> None:
    """Before 0010 the database read every job and sorted them for each page: at 100,000 jobs a
    page cost more than a hundred times one by creation (see docs/performance.md, Session 27).
    Postgres decides by its statistics, which a test's small table does not have: its sequential
    scans and sorts are switched off for the plan, so what is checked is that the index serves
    this query's order (at 100,000 jobs it picks it unprompted: docs/performance.md)."""
    _jobs_changed_in_turn(store, 3)
    statements: list[tuple[str, Any]] = []

    def seen(_conn: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        if statement.lstrip().startswith("SELECT") and "FROM jobs" in statement:
            statements.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        for query in (BY_UPDATE, JobQuery(order_by="updated_at", types=(JobType.SYNC, JobType.RESET))):
            statements.clear()
            store.page_jobs(query)
            ((statement, parameters),) = statements
            plan = _plan(store, statement, parameters)
            assert INDEX in plan, plan
            assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)


def _plan(store: SqlJobStore, statement: str, parameters: Any) -> str:
    with store.engine.connect() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        if store.dialect == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            return "\n".join(row[-1] for row in cursor.fetchall())
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_sort = off")
        cursor.execute("EXPLAIN " + statement, parameters)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        conn.rollback()
        return plan
