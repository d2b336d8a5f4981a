"""Lists of connections and counts of jobs, where connections have thousands of streams (a
catalog of megabytes each): a list reads the catalogs it shows and no other, and a count is the
database's (docs/performance.md, "Session 25"). On SQLite and Postgres alike, on the real store
with a spy that counts what is read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ferryman.api.app import create_app
from ferryman.api.context import ApiContext
from ferryman.cli import app as cli_app
from ferryman.cli import connections as cli_connections
from ferryman.errors import StoreError
from ferryman.jobs.states import JobStatus, JobType
from ferryman.notifications import Dispatcher
from ferryman.service import JobService
from ferryman.store import SqlJobStore
from ferryman.store.base import Connection, Job, JobQuery
from ferryman.web.pages import connection_rows
from tests.contract.store_support import claim_one, store, store_url

__all__ = ["store", "store_url"]  # fixtures, imported for pytest

STREAMS = 300


class ListCounting:
    """The store, counting the catalogs and the job rows its lists read."""

    def __init__(self, real: SqlJobStore) -> None:
        self.real = real
        self.catalogs = self.job_rows = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def list_connections(self, *args: Any, **kwargs: Any) -> list[Connection]:
        found: list[Connection] = self.real.list_connections(*args, **kwargs)
        self.catalogs += sum(isinstance(c.catalog, dict) for c in found)
        return found

    def get_connection_by_id(self, connection_id: int, *args: Any, **kwargs: Any) -> Connection:
        found: Connection = self.real.get_connection_by_id(connection_id, *args, **kwargs)
        self.catalogs += isinstance(found.catalog, dict)  # not left unread (UnreadCatalog)
        return found

    def page_jobs(self, query: JobQuery) -> list[Job]:
        found = self.real.page_jobs(query)
        self.job_rows += len(found)
        return found


def _catalog(streams: int) -> dict[str, Any]:
    return {
        "streams": [
            {
                "stream": {"name": f"table_{n}", "json_schema": {"type": "object"}},
                "sync_mode": "full_refresh",
                "destination_sync_mode": "append",
            }
            for n in range(streams)
        ]
    }


def _connections(store: SqlJobStore, streams: list[int]) -> list[Connection]:
    source = store.create_actor("source", "db", "builtin:source-bench", {"count": 1})
    destination = store.create_actor("destination", "out", "builtin:destination-devnull", {})
    return [
        store.create_connection(f"many{n}", source.id, destination.id, _catalog(count))
        for n, count in enumerate(streams)
    ]


def test_the_database_counts_a_connections_streams_as_its_catalog_holds_them(store: SqlJobStore) -> None:
    made = _connections(store, [STREAMS, 0, 1])
    odd = store.create_connection("odd", made[0].source_id, made[0].destination_id, {"streams": {}})
    bare = store.create_connection("bare", made[0].source_id, made[0].destination_id, {})
    listed = store.list_connections(catalogs=False)
    assert [c.stream_count for c in listed] == [STREAMS, 0, 1, 0, 0]
    assert [c.stream_count for c in store.list_connections()] == [STREAMS, 0, 1, 0, 0]
    assert [c.id for c in listed] == [c.id for c in [*made, odd, bare]]
    with pytest.raises(StoreError, match="get_connection_by_id"):
        listed[0].catalog.get("streams")
    assert [c.name for c in store.list_connections(offset=1, limit=2)] == ["many1", "many2"]


def test_the_web_connections_list_reads_no_catalog(store: SqlJobStore) -> None:
    made = _connections(store, [STREAMS, STREAMS, STREAMS])
    counting = ListCounting(store)
    rows = connection_rows(JobService(counting))  # type: ignore[arg-type]
    assert [(row.connection.name, row.source.name, row.health) for row in rows] == [
        (c.name, "db", "never") for c in made
    ]
    assert counting.catalogs == 0


@contextmanager
def _cli_on(store: Any) -> Iterator[None]:
    @contextmanager
    def service() -> Iterator[JobService]:
        yield JobService(store)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_connections, "job_service", service)
        yield


def test_connections_list_counts_streams_without_their_catalogs_and_json_reads_each_once(
    store: SqlJobStore,
) -> None:
    _connections(store, [STREAMS, 2])
    counting = ListCounting(store)
    with _cli_on(counting):
        table = CliRunner().invoke(cli_app, ["connections", "list"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert counting.catalogs == 0
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table.output.splitlines()]
    assert [row for row in rows if row] == [
        ["1", "many0", "db", "out", str(STREAMS), "active", "manual", ""],
        ["2", "many1", "db", "out", "2", "active", "manual", ""],
    ]

    with _cli_on(counting):
        listed = CliRunner().invoke(cli_app, ["connections", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    documents = json.loads(listed.output)["connections"]
    assert [len(d["streams"]) for d in documents] == [STREAMS, 2]
    assert counting.catalogs == 2  # each once


def _api(store: Any) -> TestClient:
    return TestClient(create_app(ApiContext(JobService(store)), auth_required=False))


def test_a_page_of_connections_reads_the_catalogs_it_shows_only(store: SqlJobStore) -> None:
    made = _connections(store, [STREAMS, 1, 2, 3])
    counting = ListCounting(store)
    with _api(counting) as client:
        first = client.get("/v1/connections", params={"limit": 2}).json()
        assert counting.catalogs <= 3  # the page's two, and one to know there is a next page
        last = client.get("/v1/connections", params={"limit": 2, "offset": 2}).json()
        everything = client.get("/v1/connections").json()
        counting.catalogs = 0
        metrics = client.get("/metrics")
    assert metrics.status_code == 200 and counting.catalogs == 0
    assert [d["connectionId"] for d in first["data"] + last["data"]] == [c.uuid for c in made]
    assert [len(d["configurations"]["streams"]) for d in everything["data"]] == [STREAMS, 1, 2, 3]
    assert "next" in first and "next" not in last and "next" not in everything


def _syncs(store: SqlJobStore, conn: Connection, count: int) -> list[Job]:
    """``count`` succeeded syncs of the connection, each config holding its catalog."""
    ended = []
    for _ in range(count):
        config = {"connection_id": str(conn.id), "catalog": _catalog(STREAMS)}
        store.enqueue(JobType.SYNC, str(conn.id), config)
        job, attempt = claim_one(store)
        ended.append(store.succeed_attempt(attempt, {}, job.created_at))
    return ended


def test_the_config_apis_job_count_is_the_databases(store: SqlJobStore) -> None:
    (conn,) = _connections(store, [STREAMS])
    syncs = _syncs(store, conn, 5)
    running = store.enqueue(JobType.SYNC, str(conn.id), {"connection_id": str(conn.id)})
    counting = ListCounting(store)
    body: dict[str, Any] = {"configTypes": ["sync"], "configId": conn.uuid, "pagination": {"pageSize": 2}}
    with _api(counting) as client:
        page = client.post("/api/v1/jobs/list", json=body).json()
        assert counting.job_rows == 2  # the page's, not every job counted
        later = client.post("/api/v1/jobs/list", json={**body, "pagination": {"pageSize": 2, "rowOffset": 4}})
        oldest = client.post("/api/v1/jobs/list", json={**body, "orderByMethod": "ASC"}).json()
        ended = client.post(
            "/api/v1/jobs/list", json={**body, "statuses": ["succeeded", "pending", "succeeded"]}
        ).json()
        done = client.post("/api/v1/jobs/list", json={**body, "statuses": ["succeeded"]}).json()
    newest_first = [running.id, *reversed([j.id for j in syncs])]
    assert page["totalJobCount"] == later.json()["totalJobCount"] == 6
    assert [j["job"]["id"] for j in page["jobs"] + later.json()["jobs"]] == newest_first[:2] + newest_first[
        4:
    ]
    assert [j["job"]["id"] for j in oldest["jobs"]] == newest_first[::-1][:2]
    assert (ended["totalJobCount"], done["totalJobCount"]) == (6, 5)
    assert page["jobs"][0]["job"]["status"] == JobStatus.PENDING.value


def test_a_webhook_and_its_events_name_their_connection_without_its_catalog(store: SqlJobStore) -> None:
    """A webhook of a connection shows its UUID, its events are masked by the connection's ends,
    and a sync's API documents name it: none of them reads its catalog (docs/performance.md,
    "Session 27")."""
    (conn,) = _connections(store, [STREAMS])
    (sync,) = _syncs(store, conn, 1)
    hook = store.add_webhook("http://127.0.0.1:9/hook", "json", ["disabled"], connection_id=conn.id)
    store.record_event("disabled", conn.id, detail={"reason": "too many failures"})
    counting = ListCounting(store)
    with _api(counting) as client:
        listed = client.get("/v1/ferryman/notifications").json()["data"]
        one = client.get(f"/v1/ferryman/notifications/{hook.uuid}").json()
        own = client.get(f"/v1/ferryman/jobs/{sync.id}").json()
        config = client.post("/api/v1/jobs/get", json={"id": sync.id}).json()
    assert [d["connectionId"] for d in listed] == [one["connectionId"]] == [conn.uuid]
    assert own["connectionId"] == conn.uuid
    assert config["job"]["configId"] == conn.uuid
    dispatcher = Dispatcher(counting, "http://ferryman.test")  # type: ignore[arg-type]
    ((event, claimed),) = counting.claim_events("d1", 60, 10)
    payload = dispatcher.payload(event, claimed)
    assert payload["event"] == "disabled" and payload["connection"]["connectionId"] == conn.uuid
    assert payload["reason"] == "too many failures"
    assert counting.catalogs == 0
