"""The session's Temporal dev server, and a `ferryman server` that runs its jobs on it."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.api_server import running_server
from tests.temporal_support import TemporalServer, temporal_binary


def test_the_dev_server_serves_its_default_namespace(temporal_server: TemporalServer) -> None:
    binary = temporal_binary()
    assert binary is not None
    described = subprocess.run(
        [
            binary,
            "operator",
            "namespace",
            "describe",
            "--address",
            temporal_server.address,
            "--namespace",
            temporal_server.namespace,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert described.returncode == 0, described.stderr
    assert "Registered" in described.stdout


def test_a_server_on_temporal_runs_a_sync_submitted_over_http(
    temporal_server: TemporalServer, tmp_path: Path
) -> None:
    """`ferryman server --engine temporal`: the job a client submits starts its workflow on the
    dev server, the server's own worker runs it, and the API's job shows it succeeded."""
    home = tmp_path / "home"
    home.mkdir()
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    env = {
        "FERRYMAN_TEMPORAL_ADDRESS": temporal_server.address,
        "FERRYMAN_TEMPORAL_NAMESPACE": temporal_server.namespace,
        "FERRYMAN_TEMPORAL_TASK_QUEUE_PREFIX": prefix,
    }
    with (
        running_server(home, "--engine", "temporal", env=env) as srv,
        httpx.Client(base_url=srv.v1, timeout=60) as client,
    ):
        workspace = client.get("/workspaces").json()["data"][0]["workspaceId"]
        source = client.post(
            "/sources",
            json={
                "name": "bench",
                "workspaceId": workspace,
                "configuration": {"sourceType": "bench", "count": 2500},
            },
        )
        assert source.status_code == 200, source.text
        out = srv.home / "out"
        destination = client.post(
            "/destinations",
            json={
                "name": "files",
                "workspaceId": workspace,
                "configuration": {"destinationType": "jsonl", "path": str(out)},
            },
        )
        assert destination.status_code == 200, destination.text
        conn = client.post(
            "/connections",
            json={
                "sourceId": source.json()["sourceId"],
                "destinationId": destination.json()["destinationId"],
            },
        )
        assert conn.status_code == 200, conn.text
        submitted = client.post(
            "/jobs", json={"connectionId": conn.json()["connectionId"], "jobType": "sync"}
        )
        assert submitted.status_code == 200, submitted.text
        job_id = submitted.json()["jobId"]
        job = _wait_for_end(client, job_id)
    assert job["status"] == "succeeded", job
    assert job["rowsSynced"] == 2500
    assert len((out / "stream_0.jsonl").read_text().splitlines()) == 2500
    # It ran on Temporal: the job's workflow is there, completed.
    binary = temporal_binary()
    assert binary is not None
    described = subprocess.run(
        [
            binary,
            "workflow",
            "describe",
            "--address",
            temporal_server.address,
            "--namespace",
            temporal_server.namespace,
            "--workflow-id",
            f"{prefix}ferryman-job-{job_id}",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert described.returncode == 0, described.stderr
    assert "WORKFLOW_EXECUTION_STATUS_COMPLETED" in described.stdout


def _wait_for_end(client: httpx.Client, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the job, as a client polls it
        job = client.get(f"/jobs/{job_id}")
        assert job.status_code == 200, job.text
        if job.json()["status"] in ("succeeded", "failed", "cancelled"):
            return dict(job.json())
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end in 120 s: {job.json()}")
