"""SIGTERM to `ferryman server`: it stops taking requests, lets the running sync finish (as
`ferryman worker` does), and exits 0 with nothing left running."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import httpx
import psutil

from tests.e2e.api_server import ferryman, running_server


def test_sigterm_stops_requests_and_lets_the_running_sync_finish(tmp_path: Path) -> None:
    with running_server(tmp_path) as server, httpx.Client(base_url=server.v1, timeout=30) as client:
        workspace = client.get("/workspaces").json()["data"][0]["workspaceId"]
        source = client.post(
            "/sources",
            json={
                "name": "bench",
                "workspaceId": workspace,
                "configuration": {"sourceType": "bench", "count": 3_000_000, "state_every": 100_000},
            },
        )
        destination = client.post(
            "/destinations",
            json={"name": "null", "workspaceId": workspace, "configuration": {"destinationType": "dev-null"}},
        )
        assert source.status_code == destination.status_code == 200, (source.text, destination.text)
        connection = client.post(
            "/connections",
            json={
                "sourceId": source.json()["sourceId"],
                "destinationId": destination.json()["destinationId"],
            },
        )
        assert connection.status_code == 200, connection.text
        job = client.post(
            "/jobs", json={"connectionId": connection.json()["connectionId"], "jobType": "sync"}
        )
        job_id = job.json()["jobId"]
        while client.get(f"/jobs/{job_id}").json()["status"] != "running":  # the test timeout bounds it
            time.sleep(0.1)
        # "running" comes as the attempt starts, a moment before its connectors do.
        while not (connectors := psutil.Process(server.process.pid).children(recursive=True)):
            time.sleep(0.05)  # the sync's source and destination, run by the server's engine

        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=240) == 0
    log = (tmp_path / "server.log").read_text()
    assert "waiting for 1 running attempt" in log
    for process in connectors:  # the watchdog ends when it sees the server gone, nothing to stop
        with contextlib.suppress(psutil.Error):
            if any(arg.endswith("_watchdog_main.py") for arg in process.cmdline()):
                process.wait(timeout=30)
    assert not [p for p in connectors if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    shown = ferryman(tmp_path, "jobs", "show", str(job_id), "--json")
    assert '"status": "succeeded"' in shown.stdout, shown.stdout + shown.stderr


def test_sigterm_stops_an_api_only_server_cleanly(tmp_path: Path) -> None:
    with running_server(tmp_path, "--no-engine") as server:
        assert httpx.get(f"{server.v1}/health").status_code == 200
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=60) == 0
    assert "ferryman server stopped" in (tmp_path / "server.log").read_text()
