"""A real `ferryman server` driven over HTTP as legacy dagster-airbyte and older Airflow providers
drive Airbyte's config API (/api/v1), and through Ferryman's own routes (/v1/ferryman)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferryman.store import open_store
from tests.e2e.api_server import Server, ferryman, running_server

SECRET = "sk-live-0123456789abcdef"
POLL_S = 0.2
DONE = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, httpx.Client]]:
    home = tmp_path / "home"
    home.mkdir()
    created = ferryman(home, "applications", "create", "tests", "--json")
    assert created.returncode == 0, created.stderr
    app = json.loads(created.stdout)
    with running_server(home) as srv:
        auth = httpx.BasicAuth(app["client_id"], app["client_secret"])  # legacy dagster's basic auth
        with httpx.Client(base_url=srv.url, auth=auth, timeout=60) as client:
            yield srv, client


def _connection(srv: Server, client: httpx.Client, count: int, **source: Any) -> dict[str, Any]:
    workspace = client.post("/api/v1/workspaces/list", json={}).json()["workspaces"][0]["workspaceId"]
    configuration = {"sourceType": "bench", "count": count, "api_key": SECRET, **source}
    created = client.post(
        "/v1/sources", json={"name": "bench", "workspaceId": workspace, "configuration": configuration}
    )
    assert created.status_code == 200, created.text
    destination = client.post(
        "/v1/destinations",
        json={
            "name": "duck",
            "workspaceId": workspace,
            "configuration": {"destinationType": "duckdb", "destination_path": str(srv.home / "out.duckdb")},
        },
    )
    assert destination.status_code == 200, destination.text
    conn = client.post(
        "/v1/connections",
        json={"sourceId": created.json()["sourceId"], "destinationId": destination.json()["destinationId"]},
    )
    assert conn.status_code == 200, conn.text
    return dict(conn.json())


def _config_wait(client: httpx.Client, job_id: int, until: set[str]) -> dict[str, Any]:
    """What legacy dagster's sync_and_poll does: POST /jobs/get until the status is final."""
    while True:  # the test's global timeout bounds this
        info = client.post("/api/v1/jobs/get", json={"id": job_id})
        assert info.status_code == 200, info.text
        if info.json()["job"]["status"] in until:
            return dict(info.json())
        time.sleep(POLL_S)


def _wait(client: httpx.Client, job_id: int) -> dict[str, Any]:
    while True:
        job = client.get(f"/v1/ferryman/jobs/{job_id}").json()
        if job["status"] in DONE:
            return dict(job)
        time.sleep(POLL_S)


def test_legacy_dagster_triggers_a_sync_and_polls_it_to_succeeded(
    server: tuple[Server, httpx.Client],
) -> None:
    srv, client = server
    assert client.get("/api/v1/health").json() == {"available": True}
    conn = _connection(srv, client, count=1500)
    read = client.post("/api/v1/connections/get", json={"connectionId": conn["connectionId"]}).json()
    assert read["breakingChange"] is False and read["prefix"] == ""
    (stream,) = read["syncCatalog"]["streams"]
    assert stream["stream"]["name"] == "stream_0" and stream["config"]["selected"] is True
    started = client.post("/api/v1/connections/sync", json={"connectionId": conn["connectionId"]})
    assert started.status_code == 200, started.text
    job = started.json()["job"]
    assert job["configType"] == "sync" and job["configId"] == conn["connectionId"]
    busy = client.post("/api/v1/connections/sync", json={"connectionId": conn["connectionId"]})
    assert busy.status_code == 409 and busy.headers["content-type"] == "application/problem+json"
    info = _config_wait(client, job["id"], DONE)
    assert info["job"]["status"] == "succeeded"
    last = info["attempts"][-1]["attempt"]  # what dagster's materializations read
    assert last["totalStats"]["recordsCommitted"] == 1500 == last["recordsSynced"]
    assert last["streamStats"][0]["streamName"] == "stream_0"
    assert any("source" in line.lower() for line in info["attempts"][-1]["logs"]["logLines"])
    # dagster cancels a job it did not expect to see end: 200, unchanged.
    cancel = client.post("/api/v1/jobs/cancel", json={"id": job["id"]})
    assert cancel.status_code == 200 and cancel.json()["job"]["status"] == "succeeded"
    listed = client.post(
        "/api/v1/jobs/list",
        json={"configTypes": ["sync"], "configId": conn["connectionId"], "pagination": {"pageSize": 5}},
    ).json()
    assert listed["totalJobCount"] == 1 and listed["jobs"][0]["job"]["id"] == job["id"]
    assert listed["jobs"][0]["attempts"][0]["status"] == "succeeded"
    # The same job, the same integer id, in the public API.
    assert client.get(f"/v1/jobs/{job['id']}").json()["rowsSynced"] == 1500


def test_legacy_dagster_asset_loading_reads(server: tuple[Server, httpx.Client]) -> None:
    srv, client = server
    conn = _connection(srv, client, count=10)
    (workspace,) = client.post("/api/v1/workspaces/list", json={}).json()["workspaces"]
    listed = client.post("/api/v1/connections/list", json={"workspaceId": workspace["workspaceId"]}).json()
    assert [c["connectionId"] for c in listed["connections"]] == [conn["connectionId"]]
    assert client.post("/api/v1/operations/list", json={"connectionId": conn["connectionId"]}).json() == {
        "operations": []
    }
    destination = client.post(
        "/api/v1/destinations/get", json={"destinationId": conn["destinationId"]}
    ).json()
    assert destination["destinationName"] == "duckdb" and "connectionConfiguration" in destination
    source = client.post("/api/v1/sources/get", json={"sourceId": conn["sourceId"]})
    assert source.json()["connectionConfiguration"]["api_key"] == "**********"
    assert SECRET not in source.text
    missing = client.post("/api/v1/jobs/get", json={"id": 987654})
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert httpx.post(f"{srv.url}/api/v1/workspaces/list", json={}).status_code == 401


def test_a_long_sync_is_cancelled_through_the_config_api(server: tuple[Server, httpx.Client]) -> None:
    srv, client = server
    conn = _connection(srv, client, count=500_000_000)
    job = client.post("/api/v1/connections/sync", json={"connectionId": conn["connectionId"]}).json()["job"]
    _config_wait(client, job["id"], {"running"})
    cancelled = client.post("/api/v1/jobs/cancel", json={"id": job["id"]})
    assert cancelled.status_code == 200
    assert _config_wait(client, job["id"], DONE)["job"]["status"] == "cancelled"


def test_attempts_log_tail_and_follow_of_a_job(server: tuple[Server, httpx.Client]) -> None:
    srv, client = server
    conn = _connection(srv, client, count=300)
    job = client.post("/v1/jobs", json={"connectionId": conn["connectionId"], "jobType": "sync"}).json()
    # Followed at once, before the engine has started an attempt: the stream waits for it, and
    # ends by itself when the attempt ends.
    events: list[tuple[str, str]] = []
    with client.stream(
        "GET", f"/v1/ferryman/jobs/{job['jobId']}/log/follow", params={"lines": 10000}
    ) as live:
        assert live.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in live.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, line[6:]))
    assert events[-1][0] == "end" and json.loads(events[-1][1])["status"] == "succeeded"
    assert _wait(client, job["jobId"])["status"] == "succeeded"
    tail = client.get(f"/v1/ferryman/jobs/{job['jobId']}/log", params={"lines": 3}).json()
    assert len(tail["lines"]) == 3 and tail["attemptNumber"] == 0
    followed = [data for name, data in events if name == "line"]
    assert followed[-3:] == tail["lines"]
    attempts = client.get(f"/v1/ferryman/jobs/{job['jobId']}/attempts").json()["data"]
    assert attempts[0]["streamStats"][0]["stats"]["recordsCommitted"] == 300
    assert SECRET not in json.dumps(attempts) + json.dumps(events)
    assert client.get(f"/v1/ferryman/jobs/{job['jobId']}/log", params={"attempt": 5}).status_code == 404


def _definition(client: httpx.Client, slug: str) -> str:
    found = [d for d in client.get("/v1/ferryman/definitions").json()["data"] if d["slug"] == slug]
    return str(found[0]["definitionId"])


def test_state_get_set_clear_and_409_while_a_sync_is_live(server: tuple[Server, httpx.Client]) -> None:
    srv, client = server
    conn = _connection(srv, client, count=500_000_000)
    path = f"/v1/ferryman/connections/{conn['connectionId']}/state"
    assert client.get(path).json() == {"connectionId": conn["connectionId"], "state": []}
    state = [
        {"type": "STREAM", "stream": {"stream_descriptor": {"name": "stream_0"}, "stream_state": {"id": 7}}}
    ]
    put = client.put(path, json={"state": state})
    assert put.status_code == 200 and put.json()["state"] == state
    assert client.get(path).json()["state"] == state
    bad = client.put(path, json={"state": [{"type": "STREAM", "stream": {}}]})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    # A client that sends an unset field (null) gets told, and the stored state stays.
    for malformed in ('{"state": null}', '{"state": [1, 2]}', '{"state": "x"}', '{"state": [{"cursor": 1}]}'):
        refused = client.put(path, content=malformed, headers={"content-type": "application/json"})
        assert refused.status_code == 422 and "\n" not in refused.json()["detail"], (malformed, refused.text)
        assert client.get(path).json()["state"] == state
    job = client.post("/v1/jobs", json={"connectionId": conn["connectionId"], "jobType": "sync"}).json()
    assert client.put(path, json={"state": state}).status_code == 409
    assert client.delete(path).status_code == 409
    client.delete(f"/v1/jobs/{job['jobId']}")
    assert _wait(client, job["jobId"])["status"] == "cancelled"
    two = [*state, {**state[0], "stream": {**state[0]["stream"], "stream_descriptor": {"name": "stream_1"}}}]
    assert client.put(path, json={"state": two}).status_code == 200
    assert (
        client.delete(path, params={"stream": "stream_1"}).status_code == 204
    )  # one stream's, as Airbyte clears
    assert client.get(path).json()["state"] == state
    unknown = client.delete(path, params={"stream": "nope"})
    assert unknown.status_code == 422 and "unknown stream(s) nope" in unknown.json()["detail"]
    # A source's secret its connector keeps in its state is masked, and kept when sent back.
    secret = [{**state[0], "stream": {**state[0]["stream"], "stream_state": {"id": 7, "token": SECRET}}}]
    assert SECRET not in client.put(path, json={"state": secret}).text
    shown = client.get(path).json()["state"]
    assert SECRET not in json.dumps(shown) and shown[0]["stream"]["stream_state"]["token"] == "**********"
    assert client.put(path, json={"state": shown}).status_code == 200
    assert client.get(path).json()["state"] == shown
    assert client.delete(path).status_code == 204
    assert client.get(path).json()["state"] == []


def test_deleting_a_connection_cancels_its_live_sync_and_forgets_it_and_its_state(
    server: tuple[Server, httpx.Client],
) -> None:
    srv, client = server
    conn = _connection(srv, client, count=500_000_000)
    ident = conn["connectionId"]
    state = [
        {"type": "STREAM", "stream": {"stream_descriptor": {"name": "stream_0"}, "stream_state": {"id": 7}}}
    ]
    assert client.put(f"/v1/ferryman/connections/{ident}/state", json={"state": state}).status_code == 200
    store = open_store(f"sqlite:///{srv.home / 'ferryman.db'}")
    stored_id = store.get_connection_by_uuid(ident).id
    job = client.post("/v1/jobs", json={"connectionId": ident, "jobType": "sync"}).json()
    while client.get(f"/v1/ferryman/jobs/{job['jobId']}").json()["status"] != "running":
        time.sleep(POLL_S)  # the test's global timeout bounds this

    deleted = client.delete(f"/v1/connections/{ident}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert _wait(client, job["jobId"])["status"] == "cancelled"  # its engine stopped it
    answers = [
        client.get(f"/v1/connections/{ident}"),
        client.get(f"/v1/ferryman/connections/{ident}/state"),
        client.delete(f"/v1/connections/{ident}"),  # a second DELETE: gone already
        client.delete("/v1/connections/00000000-0000-4000-8000-000000000000"),
        client.delete("/v1/connections/not-a-uuid"),
    ]
    assert [a.status_code for a in answers] == [404] * 5, [a.text for a in answers]
    assert all(a.headers["content-type"] == "application/problem+json" for a in answers)
    assert "no connection" in answers[2].json()["detail"]
    assert [c["connectionId"] for c in client.get("/v1/connections").json()["data"]] == []
    assert store.get_state(stored_id) == []
    assert SECRET not in deleted.text + "".join(a.text for a in answers)


def test_spec_check_and_discover_as_jobs_and_their_history(server: tuple[Server, httpx.Client]) -> None:
    srv, client = server
    conn = _connection(srv, client, count=10)
    check = client.post(f"/v1/ferryman/sources/{conn['sourceId']}/check")
    assert check.status_code == 200 and check.json()["jobType"] == "check"
    checked = _wait(client, check.json()["jobId"])
    assert checked["output"]["check"]["status"] == "succeeded" and checked["sourceId"] == conn["sourceId"]
    discover = _wait(client, client.post(f"/v1/ferryman/sources/{conn['sourceId']}/discover").json()["jobId"])
    assert [s["name"] for s in discover["output"]["catalog"]["streams"]] == ["stream_0"]
    definition = _definition(client, "duckdb")
    spec = _wait(client, client.post(f"/v1/ferryman/definitions/{definition}/spec").json()["jobId"])
    assert "connectionSpecification" in spec["output"]["spec"] and spec["definitionId"] == definition
    dest_check = _wait(
        client, client.post(f"/v1/ferryman/destinations/{conn['destinationId']}/check").json()["jobId"]
    )
    assert dest_check["status"] == "succeeded"
    history = client.get("/v1/ferryman/jobs", params={"jobType": "check"}).json()["data"]
    assert [j["jobId"] for j in history] == [dest_check["jobId"], checked["jobId"]]  # newest first
    of_source = client.get("/v1/ferryman/jobs", params={"sourceId": conn["sourceId"]}).json()["data"]
    assert {j["jobType"] for j in of_source} == {"check", "discover"}
    assert client.get(f"/v1/jobs/{checked['jobId']}").status_code == 404  # not one of Airbyte's job types
    assert SECRET not in client.get("/v1/ferryman/jobs").text


def test_an_offset_past_the_largest_id_is_a_422_not_a_500(tmp_path: Path) -> None:
    # Such an offset overflowed the database driver: a 500 on every paged route, API and web.
    home = tmp_path / "home"
    home.mkdir()
    for args in (
        ("sources", "create", "s", "--connector", "builtin:source-bench", "--config", "{}"),
        ("destinations", "create", "d", "--connector", "builtin:destination-devnull"),
        ("connections", "create", "c", "--source", "s", "--destination", "d"),
    ):
        assert ferryman(home, *args).returncode == 0
    huge = str(2**64)
    with running_server(home, "--auth", "none") as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        for path in (
            "/v1/jobs",
            "/v1/ferryman/jobs",
            "/v1/sources",
            "/v1/connections",
            "/v1/ferryman/notifications",
        ):
            answer = client.get(path, params={"offset": huge})
            assert answer.status_code == 422, (path, answer.text)
            assert "offset" in answer.json()["detail"]
        for path in ("/jobs", "/connections/1", "/sources/1", "/jobs/1/log/stream"):
            assert client.get(path, params={"offset": huge}).status_code == 422, path
        assert client.get("/v1/jobs", params={"offset": str(2**63 - 1)}).json()["data"] == []
