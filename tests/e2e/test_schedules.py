"""Schedules as a user meets them: the CLI's flags, `ferryman scheduler`, and the server's API."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.api_server import running_server
from tests.e2e.test_cli_jobs import Cli, wait_for


def bench(cli: Cli, tmp_path: Path, *schedule: str) -> dict[str, Any]:
    cli("sources", "create", "src", "--connector", "builtin:source-bench", "--config", '{"count": 5}')
    destination = json.dumps({"path": str(tmp_path / "out.duckdb")})
    cli("destinations", "create", "dst", "--connector", "builtin:destination-duckdb", "--config", destination)
    created = cli.json("connections", "create", "c", "--source", "src", "--destination", "dst", *schedule)
    return dict(created)


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_connection_scheduled_from_the_cli(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    before = datetime.now(UTC)
    created = bench(cli, tmp_path, "--schedule", "every 2h")
    assert created["schedule"] == "every 2h"
    due = moment(created["next_run_at"])
    assert before + timedelta(hours=2) <= due <= datetime.now(UTC) + timedelta(hours=2)

    shown = cli("connections", "show", "c").stdout
    assert "schedule: every 2h; next run " in shown and re.search(r"\(in 1h 5\dm\)", shown)

    # Quartz, weekdays at noon in Berlin: 11:00Z or 10:00Z (summer), never on a weekend.
    changed = cli.json(
        "connections", "update", "c", "--schedule", "cron 0 0 12 ? * MON-FRI", "--timezone", "Europe/Berlin"
    )
    assert changed["schedule"] == "cron 0 0 12 ? * MON-FRI (Europe/Berlin)"
    due = moment(changed["next_run_at"])
    assert due.weekday() < 5 and (due.hour, due.minute) in ((11, 0), (10, 0))
    listed = cli("connections", "list").stdout
    assert "next run" in listed and "MON-FRI" in listed

    # Mistakes are one line, exit 2, and change nothing.
    both = cli.bad_input("connections", "update", "c", "--schedule", "cron 0 0 12 15 * MON")
    assert "sets both a day of month and a day of week" in both
    assert "use 1-7 (1 = SUN)" in cli.bad_input("connections", "update", "c", "--schedule", "0 0 12 ? * 0")
    assert "--timezone" in cli.bad_input("connections", "update", "c", "--timezone", "UTC")
    assert "unknown time zone" in cli.bad_input(
        "connections", "update", "c", "--schedule", "0 12 * * *", "--timezone", "Moon/Crater"
    )
    assert cli.json("connections", "show", "c")["next_run_at"] == changed["next_run_at"]
    for far in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"):  # were a traceback
        assert "out of range" in cli.bad_input("scheduler", "--once", "--now", far)

    # One pass at the due time makes the run's job (a worker would run it); a second pass does not.
    passed = cli("scheduler", "--once", "--now", changed["next_run_at"], "--json")
    event = json.loads(passed.stdout.strip().splitlines()[-1])
    assert event["event"] == "pass" and len(event["created"]) == 1
    job = cli.json("jobs", "show", str(event["created"][0]))["job"]
    assert (job["type"], job["status"], job["connection"]) == ("sync", "pending", "c")
    again = cli("scheduler", "--once", "--now", changed["next_run_at"], "--json")
    assert json.loads(again.stdout.strip().splitlines()[-1])["created"] == []

    paused = cli("connections", "update", "c", "--status", "inactive").stdout
    assert "not scheduled: the connection is inactive" in paused
    assert cli.json("connections", "show", "c")["next_run_at"] is None


def test_the_scheduler_process_stops_on_sigterm(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home", FERRYMAN_SCHEDULER_INTERVAL_S="0.2")
    cli("connections", "list")  # a store to open
    log = tmp_path / "scheduler.log"
    with log.open("w") as sink:
        process = subprocess.Popen(cli.argv("scheduler"), stdout=sink, stderr=sink, text=True, env=cli.env)
    try:
        wait_for(lambda: "scheduler started" in log.read_text(), "the scheduler to start")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "scheduler stopped" in log.read_text()


@pytest.fixture
def tick_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FERRYMAN_SCHEDULER_INTERVAL_S", "0.2")


def test_the_server_runs_a_connection_scheduled_through_the_api(tmp_path: Path, tick_fast: None) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with running_server(home) as server, httpx.Client(base_url=server.v1, timeout=60) as client:
        workspace = client.get("/workspaces").json()["data"][0]["workspaceId"]
        source = client.post(
            "/sources",
            json={
                "name": "bench",
                "workspaceId": workspace,
                "configuration": {"sourceType": "bench", "count": 5},
            },
        ).json()
        destination = client.post(
            "/destinations",
            json={
                "name": "duck",
                "workspaceId": workspace,
                "configuration": {"destinationType": "duckdb", "destination_path": str(home / "out.duckdb")},
            },
        ).json()
        ends = {"sourceId": source["sourceId"], "destinationId": destination["destinationId"]}

        bad = client.post(
            "/connections",
            json={**ends, "schedule": {"scheduleType": "cron", "cronExpression": "0 0 25 * * ?"}},
        )
        assert bad.status_code == 422 and "invalid cron expression" in bad.json()["detail"]
        # A last word that names a folder of zones, or no file at all, is no zone: a 422 too.
        for word in ("America", "x" * 300):
            odd = {"scheduleType": "cron", "cronExpression": f"0 0 2 * * ? {word}"}
            refused = client.post("/connections", json={**ends, "schedule": odd})
            assert refused.status_code == 422, refused.text
        assert client.get("/connections").json()["data"] == []  # nothing half-made

        # Every second (Quartz): the server's scheduler makes a sync job, and its engine runs it.
        made = client.post(
            "/connections",
            json={**ends, "schedule": {"scheduleType": "cron", "cronExpression": "* * * * * ?"}},
        )
        assert made.status_code == 200, made.text
        conn = made.json()
        assert conn["schedule"] == {"scheduleType": "cron", "cronExpression": "* * * * * ? UTC"}
        assert conn["nextSync"] >= conn["createdAt"]
        url = f"/jobs?connectionId={conn['connectionId']}"

        def succeeded() -> list[Any]:
            return [j for j in client.get(url).json()["data"] if j["status"] == "succeeded"]

        [job, *_] = wait_for(succeeded, "a scheduled sync to succeed")
        assert job["jobType"] == "sync"

        # Basic, as Airbyte shows it; then inactive: nothing is due any more.
        patched = client.patch(
            f"/connections/{conn['connectionId']}",
            json={"schedule": {"scheduleType": "basic", "basicTiming": "Every 6 HOURS"}},
        ).json()
        assert patched["schedule"]["basicTiming"] == "Every 6 HOURS"
        assert patched["nextSync"] - int(datetime.now(UTC).timestamp()) in range(6 * 3600 - 120, 6 * 3600 + 1)
        paused = client.patch(f"/connections/{conn['connectionId']}", json={"status": "inactive"}).json()
        assert paused["status"] == "inactive" and "nextSync" not in paused
    assert "scheduler: job " in (home / "server.log").read_text()
