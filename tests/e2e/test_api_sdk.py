"""Airbyte's own Python SDK (airbyte-api) drives a real `ferryman server` over HTTP."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from airbyte_api import AirbyteAPI, api, errors, models

from tests.e2e.api_server import Server, ferryman, running_server

SECRET = "sk-live-0123456789abcdef"
POLL_S = 0.2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Server, AirbyteAPI, httpx.Client]]:
    home = tmp_path / "home"
    home.mkdir()
    created = ferryman(home, "applications", "create", "tests", "--json")
    assert created.returncode == 0, created.stderr
    app = json.loads(created.stdout)
    with running_server(home) as srv:
        security = models.Security(
            client_credentials=models.SchemeClientCredentials(
                client_id=app["client_id"],
                client_secret=app["client_secret"],
                token_url="v1/applications/token",
            )
        )
        sdk = AirbyteAPI(server_url=srv.v1, security=security)
        auth = httpx.BasicAuth(app["client_id"], app["client_secret"])  # basic auth works as well
        with httpx.Client(base_url=srv.v1, auth=auth, timeout=30) as client:
            yield srv, sdk, client


def _wait(sdk: AirbyteAPI, job_id: int, until: set[str]) -> Any:
    while True:  # the test's global timeout bounds this
        job = sdk.jobs.get_job(request=api.GetJobRequest(job_id=job_id)).job_response
        if job.status in until:
            return job
        time.sleep(POLL_S)


def _connection(srv: Server, sdk: AirbyteAPI, client: httpx.Client, count: int) -> tuple[str, Path]:
    workspace = sdk.workspaces.list_workspaces(request=api.ListWorkspacesRequest()).workspaces_response.data[
        0
    ]
    # The SDK types every source config as one of Airbyte's connectors: ours is sent as JSON.
    source = client.post(
        "/sources",
        json={
            "name": "bench",
            "workspaceId": workspace.workspace_id,
            "configuration": {"sourceType": "bench", "count": count, "api_key": SECRET},
        },
    )
    assert source.status_code == 200, source.text
    path = srv.home / "out.duckdb"
    destination = sdk.destinations.create_destination(
        request=models.DestinationCreateRequest(
            name="duck",
            workspace_id=workspace.workspace_id,
            configuration=models.DestinationDuckdb(destination_path=str(path)),
        )
    ).destination_response
    conn = sdk.connections.create_connection(
        request=models.ConnectionCreateRequest(
            source_id=source.json()["sourceId"],
            destination_id=destination.destination_id,
            name="bench-to-duck",
        )
    ).connection_response
    return conn.connection_id, path


def test_sdk_syncs_a_connection_and_rows_synced_match_duckdb(
    server: tuple[Server, AirbyteAPI, httpx.Client],
) -> None:
    srv, sdk, client = server
    connection_id, path = _connection(srv, sdk, client, count=2500)
    created = sdk.jobs.create_job(
        request=models.JobCreateRequest(connection_id=connection_id, job_type=models.JobTypeEnum.SYNC)
    ).job_response
    assert created.status in ("pending", "running")
    job = _wait(sdk, created.job_id, {"succeeded", "failed", "cancelled"})
    assert job.status == "succeeded"
    with duckdb.connect(str(path), read_only=True) as db:
        tables = [row[0] for row in db.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        held = sum(db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables if "stream" in t)
    assert job.rows_synced == held == 2500
    listed = sdk.jobs.list_jobs(request=api.ListJobsRequest(connection_id=connection_id)).jobs_response
    assert [j.job_id for j in listed.data] == [created.job_id]


def test_a_second_sync_is_409_and_a_long_sync_is_cancelled(
    server: tuple[Server, AirbyteAPI, httpx.Client],
) -> None:
    srv, sdk, client = server
    connection_id, _ = _connection(srv, sdk, client, count=500_000_000)
    request = models.JobCreateRequest(connection_id=connection_id, job_type=models.JobTypeEnum.SYNC)
    job = sdk.jobs.create_job(request=request).job_response
    with pytest.raises(errors.SDKError) as busy:
        sdk.jobs.create_job(request=request)
    assert busy.value.status_code == 409
    _wait(sdk, job.job_id, {"running"})
    sdk.jobs.cancel_job(request=api.CancelJobRequest(job_id=job.job_id))
    assert _wait(sdk, job.job_id, {"cancelled", "succeeded", "failed"}).status == "cancelled"
    again = client.delete(f"/jobs/{job.job_id}")
    assert again.status_code == 409 and again.headers["content-type"] == "application/problem+json"


def test_secrets_never_come_back_and_a_masked_patch_keeps_them(
    server: tuple[Server, AirbyteAPI, httpx.Client],
) -> None:
    srv, sdk, client = server
    _connection(srv, sdk, client, count=10)
    (source,) = client.get("/sources").json()["data"]
    assert source["configuration"]["api_key"] == "**********"
    patched = client.patch(
        f"/sources/{source['sourceId']}", json={"configuration": {**source["configuration"], "count": 7}}
    )
    assert patched.status_code == 200 and SECRET not in patched.text
    for path in ("/sources", "/destinations", "/connections", "/jobs", f"/sources/{source['sourceId']}"):
        response = client.get(path)
        assert response.status_code == 200 and SECRET not in response.text
    config = ferryman(srv.home, "sources", "show", "bench", "--json")
    assert "**********" in config.stdout  # the CLI masks it too; the stored value is intact:
    with sqlite3.connect(srv.home / "ferryman.db") as db:
        stored = db.execute("SELECT config FROM actors WHERE kind = 'source'").fetchone()[0]
    assert json.loads(stored) == {"count": 7, "api_key": SECRET}
    # A rename to a taken name is refused before the config it came with is written.
    bench = ("--connector", "builtin:source-bench", "--config", "{}")
    other = ferryman(srv.home, "sources", "create", "other", *bench)
    assert other.returncode == 0, other.stderr
    clash = client.patch(
        f"/sources/{source['sourceId']}",
        json={"name": "other", "configuration": {**source["configuration"], "count": 9}},
    )
    assert clash.status_code in (409, 422) and "exists already" in clash.text and SECRET not in clash.text
    with sqlite3.connect(srv.home / "ferryman.db") as db:
        query = "SELECT config FROM actors WHERE kind = 'source' AND name = 'bench'"
        stored = db.execute(query).fetchone()[0]
    assert json.loads(stored) == {"count": 7, "api_key": SECRET}
    assert SECRET not in (srv.home / "server.log").read_text()


def test_status_codes_and_problems(server: tuple[Server, AirbyteAPI, httpx.Client]) -> None:
    srv, _, client = server
    unknown = "00000000-0000-4000-8000-000000000000"
    missing = client.get(f"/connections/{unknown}")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert client.get("/jobs/999999").status_code == 404
    bad = client.post("/jobs", json={"connectionId": unknown})
    assert bad.status_code == 422 and bad.json()["title"] == "unprocessable-entity"
    assert httpx.get(f"{srv.v1}/sources").status_code == 401  # no credentials
    workspace = client.get("/workspaces").json()["data"][0]["workspaceId"]
    slug = client.post(
        "/sources", json={"name": "f", "workspaceId": workspace, "configuration": {"sourceType": "faker"}}
    )
    assert slug.status_code == 422 and "ferryman definitions add faker" in slug.json()["detail"]
    token = httpx.post(f"{srv.url}/applications/token", json={"client_id": "x", "client_secret": "y"})
    assert token.status_code == 403
    assert client.delete(f"/sources/{unknown}").status_code == 404
    assert client.get("/jobs", params={"orderBy": "id|ASC"}).status_code == 400
