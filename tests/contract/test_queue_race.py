"""A sync or reset asked for while its connection is being deleted: the user gets one clear answer
and no job, on every store. Queueing reads the connection, builds the job's config, then inserts
the job; a delete committed in between used to leave a pending sync of a connection that no longer
existed, which an engine then ran (writing to its destination) or failed three times."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from ferryman.api.app import create_app
from ferryman.api.context import ApiContext
from ferryman.engines.local import LocalEngine
from ferryman.jobs.states import JobStatus, JobType
from ferryman.service import JobService
from ferryman.settings import Settings
from ferryman.store import SqlJobStore, open_store
from ferryman.store.base import Connection, NotFound
from tests.contract.store_support import store, store_url

__all__ = ["store", "store_url"]


def _connection(store: SqlJobStore, name: str) -> Connection:
    source = store.create_actor("source", f"{name}-s", "builtin:bench", {})
    dest = store.create_actor("destination", f"{name}-d", "builtin:devnull", {})
    return store.create_connection(name, source.id, dest.id, {"streams": []})


@pytest.fixture
def other(store_url: str) -> Iterator[SqlJobStore]:
    """The same database opened by another process (a second CLI, the API server)."""
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.mark.parametrize("here", [False, True], ids=["queued", "run-here"])
@pytest.mark.parametrize("reset", [False, True], ids=["sync", "reset"])
def test_a_sync_asked_for_after_its_connection_was_read_and_deleted_gets_no_job(
    store: SqlJobStore,
    other: SqlJobStore,
    tmp_path: Path,
    reset: bool,
    here: bool,
) -> None:
    """The API and the web UI read the connection, then queue its job; ``ferryman connections
    sync`` reads it, then queues its job already started in its own engine (``run-here``). A
    delete committed by another process in between is seen where the job would be inserted."""
    conn = _connection(store, "c")
    engine = LocalEngine(store, Settings(home=tmp_path / "home"), foreground=True) if here else None
    service = JobService(store, engine=engine)
    read = store.get_connection("c")
    other.delete_connection(conn.id)
    kind = "reset_connection" if reset else "sync"
    with pytest.raises(NotFound, match=rf"^connection c was deleted: no {kind} job was queued$"):
        service.enqueue_replication(read, reset=reset, here=here)
    assert store.list_jobs(scope=str(conn.id)) == []


def test_the_api_answers_404_for_a_connection_deleted_while_its_sync_was_queued(
    store: SqlJobStore,
    other: SqlJobStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``POST /v1/jobs``: the delete lands between the request's read of the connection and the
    job's insert (a real delete by another store, at the step that builds the job's config)."""
    conn = _connection(store, "c")
    service = JobService(store)
    build = service._replication_config

    def deleted_meanwhile(c: Connection, actors: Any = None) -> dict[str, Any]:
        config = build(c, actors)
        other.delete_connection(c.id)
        return config

    monkeypatch.setattr(service, "_replication_config", deleted_meanwhile)
    with TestClient(create_app(ApiContext(service), auth_required=False)) as client:
        answer = client.post("/v1/jobs", json={"connectionId": conn.uuid, "jobType": "sync"})
    assert answer.status_code == 404, answer.text
    assert answer.json()["detail"] == "connection c was deleted: no sync job was queued"
    assert store.list_jobs(scope=str(conn.id)) == []


def _a_session_waits_for_a_lock(url: str) -> bool:
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])


def _paused_after(
    engine: sa.Engine, prefix: str, url: str, meanwhile: Callable[[], None]
) -> tuple[threading.Thread, Callable[[], None]]:
    """Once ``engine`` has run a statement starting with ``prefix`` (in its open transaction),
    run ``meanwhile`` in a thread until it ends or waits for a lock; returns that thread and the
    function that removes the hook."""
    thread = threading.Thread(target=meanwhile)

    def hook(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith(prefix) and not thread.ident:
            thread.start()
            while thread.is_alive() and not _a_session_waits_for_a_lock(url):
                thread.join(0.01)

    sa.event.listen(engine, "after_cursor_execute", hook)
    return thread, lambda: sa.event.remove(engine, "after_cursor_execute", hook)


def test_a_sync_queued_while_a_delete_is_being_written_waits_for_it_and_gets_no_job(
    store: SqlJobStore,
    other: SqlJobStore,
    store_url: str,
) -> None:
    """Postgres (READ COMMITTED): the delete has removed the row and not committed yet when the
    sync is queued. The queueing waits for the delete, then finds no connection. Before, it
    inserted its job after the delete had looked for live jobs to cancel: a pending sync of a
    deleted connection."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite: a write transaction holds the whole file; covered by the test above")
    conn = _connection(store, "c")
    read = store.get_connection("c")
    outcome: list[object] = []

    def queue() -> None:
        try:
            outcome.append(JobService(store).enqueue_replication(read))
        except NotFound as exc:
            outcome.append(exc)

    thread, unhook = _paused_after(other.engine, "DELETE FROM connections", store_url, queue)
    try:
        other.delete_connection(conn.id)
    finally:
        unhook()
        thread.join()
    assert [str(o) for o in outcome] == ["connection c was deleted: no sync job was queued"]
    assert store.list_jobs(scope=str(conn.id)) == []


def test_a_delete_while_a_sync_is_being_queued_waits_for_it_and_cancels_the_job(
    store: SqlJobStore,
    other: SqlJobStore,
    store_url: str,
) -> None:
    """Postgres, the other order: the job is inserted and not committed yet when the delete comes.
    The delete waits for it, then cancels it, so no live job outlives its connection."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite: a write transaction holds the whole file, so no delete starts inside one")
    conn = _connection(store, "c")

    thread, unhook = _paused_after(
        store.engine, "INSERT INTO jobs", store_url, lambda: other.delete_connection(conn.id)
    )
    try:
        job = JobService(store).enqueue_replication(store.get_connection("c"))
    finally:
        unhook()
        thread.join()
    assert store.get_job(job.id).status is JobStatus.CANCELLED
    with pytest.raises(NotFound):
        store.get_connection_by_id(conn.id)
    assert store.live_job(str(conn.id)) is None
    assert JobType(job.type) is JobType.SYNC
