"""What never looks at a connection's catalog must not read it: the catalog of a source of
thousands of tables is megabytes of JSON (docs/performance.md, "Session 26"). The scheduler's
planning, deleting a connection, the ``state`` commands and the HTTP API's routes that find a
connection only for its id or state, on SQLite and Postgres alike. The spy is the real store's
own engine: it notes each statement the database is sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ferryman.api.app import create_app
from ferryman.api.context import ApiContext
from ferryman.cli import app as cli_app
from ferryman.cli import connections as cli_connections
from ferryman.cli import state as cli_state
from ferryman.clock import ManualClock
from ferryman.jobs.schedules import parse_schedule
from ferryman.jobs.states import JobStatus, JobType
from ferryman.scheduler import Scheduler
from ferryman.service import JobService
from ferryman.settings import SchedulerSettings, Settings
from ferryman.store import SqlJobStore
from ferryman.store.base import Connection, NotFound
from tests.contract.store_support import T0, store, store_url

__all__ = ["store", "store_url"]  # fixtures, imported for pytest

STREAMS = 300
HOUR = timedelta(hours=1)


@contextmanager
def catalog_reads(store: SqlJobStore) -> Iterator[list[str]]:
    """The statements sent to the store's database meanwhile that read a connection's catalog."""
    found: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "connections.catalog" in statement:
            found.append(" ".join(statement.split())[:200])

    sa.event.listen(store.engine, "before_cursor_execute", seen)
    try:
        yield found
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", seen)


def _state(streams: int) -> list[dict[str, Any]]:
    return [
        {"type": "STREAM", "stream": {"stream_descriptor": {"name": f"table_{n}"}, "stream_state": {"id": n}}}
        for n in range(streams)
    ]


def _connection(store: SqlJobStore, name: str = "many") -> Connection:
    source = store.create_actor("source", f"{name}-db", "builtin:source-bench", {"count": 1})
    destination = store.create_actor("destination", f"{name}-out", "builtin:destination-devnull", {})
    catalog = {
        "streams": [
            {
                "stream": {"name": f"table_{n}", "json_schema": {"type": "object"}},
                "sync_mode": "full_refresh",
                "destination_sync_mode": "append",
            }
            for n in range(STREAMS)
        ]
    }
    made = store.create_connection(name, source.id, destination.id, catalog)
    store.save_state(made.id, _state(STREAMS))
    return made


def test_planning_reads_no_catalog_and_still_moves_back_runs_planned_ahead(store: SqlJobStore) -> None:
    clock = ManualClock(T0)
    service = JobService(store, Settings(), clock=clock)
    hourly = parse_schedule("every 1h")
    ahead = service.update_connection(_connection(store, "ahead"), schedule=hourly)
    unplanned = service.update_connection(_connection(store, "unplanned"), schedule=hourly)
    assert store.set_next_run(ahead.id, T0 + HOUR, T0 + 72 * HOUR)  # planned by a clock days ahead
    assert store.set_next_run(unplanned.id, T0 + HOUR, None)  # made before the scheduler
    scheduler = Scheduler(service, SchedulerSettings(), clock)

    with catalog_reads(store) as reads:
        assert scheduler.plan(T0) == 2
        assert scheduler.replan_ahead(T0) == 0
    assert reads == []
    assert [store.get_connection_by_id(c.id).next_run_at for c in (ahead, unplanned)] == [T0 + HOUR] * 2


def test_deleting_a_connection_reads_not_its_catalog_and_cancels_its_live_sync(store: SqlJobStore) -> None:
    conn = _connection(store)
    other = _connection(store, "other")
    live = store.enqueue(JobType.SYNC, str(conn.id), {"connection_id": str(conn.id)})

    with catalog_reads(store) as reads:
        store.delete_connection(conn.id)
        with pytest.raises(NotFound, match=f"no connection with id {conn.id}"):
            store.delete_connection(conn.id)
    assert reads == []
    assert store.get_job(live.id).status is JobStatus.CANCELLED
    assert store.get_state(conn.id) == []
    assert [c.name for c in store.list_connections()] == [other.name]
    assert store.get_state(other.id) == _state(STREAMS)


@contextmanager
def _cli_on(store: SqlJobStore) -> Iterator[None]:
    @contextmanager
    def service() -> Iterator[JobService]:
        yield JobService(store)

    with pytest.MonkeyPatch.context() as patch:
        for module in (cli_state, cli_connections):
            patch.setattr(module, "job_service", service)
        yield


def _run(store: SqlJobStore, *argv: str) -> Any:
    with _cli_on(store):
        done = CliRunner().invoke(cli_app, [*argv, "--json"])
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


def test_the_state_commands_and_connections_delete_read_no_catalog(store: SqlJobStore) -> None:
    conn = _connection(store)
    with catalog_reads(store) as reads:
        shown = _run(store, "state", "show", "many")
        cleared = _run(store, "state", "clear", "many", "--stream", "table_7")
        replaced = _run(store, "state", "set", "many", json.dumps(_state(2)))
        deleted = _run(store, "connections", "delete", "many")
    assert reads == []
    assert (shown["connection_id"], shown["state"]) == (conn.id, _state(STREAMS))
    assert [s["stream"]["stream_descriptor"]["name"] for s in cleared["state"]] == [
        f"table_{n}" for n in range(STREAMS) if n != 7
    ]
    assert replaced["state"] == _state(2)
    assert deleted == {"deleted": {"id": conn.id, "name": "many"}}
    assert store.list_connections() == []


def test_the_apis_state_routes_job_lists_and_connection_delete_read_no_catalog(store: SqlJobStore) -> None:
    """The HTTP API found a connection by its UUID reading the whole row: its catalog read to be
    thrown away on every state request and on DELETE."""
    conn = _connection(store)
    other = _connection(store, "other")
    state = f"/v1/ferryman/connections/{conn.uuid}/state"
    with (
        TestClient(create_app(ApiContext(JobService(store)), auth_required=False)) as client,
        catalog_reads(store) as reads,
    ):
        shown = client.get(state)
        cleared = client.delete(state, params={"stream": "table_7"})
        replaced = client.put(state, json={"state": _state(2)})
        listed = [
            client.get("/v1/jobs", params={"connectionId": conn.uuid}),
            client.get("/v1/ferryman/jobs", params={"connectionId": conn.uuid}),
            client.post("/api/v1/jobs/list", json={"configTypes": ["sync"], "configId": conn.uuid}),
            client.post("/api/v1/operations/list", json={"connectionId": conn.uuid}),
        ]
        deleted = client.delete(f"/v1/connections/{conn.uuid}")
    assert reads == []
    assert (shown.status_code, shown.json()["state"]) == (200, _state(STREAMS))
    assert cleared.status_code == 204
    assert (replaced.status_code, replaced.json()["state"]) == (200, _state(2))
    assert [answer.status_code for answer in listed] == [200] * 4, [answer.text for answer in listed]
    assert deleted.status_code == 204
    assert [c.name for c in store.list_connections()] == [other.name]
    assert store.get_state(conn.id) == []
