"""Notifications as a user sets them up: `ferryman notifications add`, a real `ferryman server`
(whose dispatcher posts), a real HTTP receiver, and jobs ended by the server's engine and by a
CLI process of their own. The API's routes show a webhook's URL as scheme and host only."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.e2e.api_server import ferryman, running_server
from tests.receiver import receiving

HOOKS = "/ferryman/notifications"
TOKEN_PATH = "/services/T0ABC/B0DEF/sEcReTtOkEn123"


def cli(home: Path, *args: str) -> str:
    result = ferryman(home, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_server_posts_the_end_of_jobs_ended_by_its_engine_and_by_a_cli_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRYMAN_NOTIFY_POLL_S", "0.1")
    home = tmp_path / "home"
    home.mkdir()
    cli(home, "sources", "create", "src", "--connector", "builtin:source-bench", "--config", '{"count": 40}')
    cli(home, "destinations", "create", "dst", "--connector", "builtin:destination-devnull")
    cli(home, "connections", "create", "c", "--source", "src", "--destination", "dst")
    with receiving() as receiver:
        url = receiver.url(TOKEN_PATH)
        add = ("notifications", "add", "--url", url, "--format", "json", "--on", "success,failure")
        added = json.loads(cli(home, *add, "--connection", "c", "--json"))
        assert added["url"] == f"http://127.0.0.1:{receiver.port}/..." and added["connection"] == "c"
        with running_server(home, "--auth", "none") as server, httpx.Client(base_url=server.v1) as api:
            connection = api.get("/connections").json()["data"][0]["connectionId"]
            job = api.post("/jobs", json={"connectionId": connection, "jobType": "sync"}).json()["jobId"]
            (first,) = receiver.wait_for(1)
            cli(home, "connections", "sync", "c")  # ends in the CLI's own process
            second = receiver.wait_for(2)[1]
            listed = api.get("/ferryman/notifications").json()["data"]
        log = (home / "server.log").read_text()

    assert first.path == TOKEN_PATH and first.headers["content-type"] == "application/json"
    assert first.body["event"] == "success" and first.body["job"]["jobId"] == job
    assert first.body["job"]["url"] == f"{server.url}/v1/jobs/{job}"
    assert first.body["recordsCommitted"] == 40
    assert second.body["job"]["jobId"] == job + 1 and second.body["event"] == "success"
    assert [hook["url"] for hook in listed] == [f"http://127.0.0.1:{receiver.port}/..."]
    assert listed[0]["connectionId"] == connection and listed[0]["events"] == ["success", "failure"]
    assert f"success event 1 of job {job} delivered to http://127.0.0.1:{receiver.port}/..." in log
    assert "sEcReT" not in log


def test_a_sync_that_ends_as_the_server_stops_is_posted_before_it_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGTERM lets the running sync finish; its event was written, but the dispatcher was stopped
    # with the engine, between two passes: it went out at the next start, if there was one.
    monkeypatch.setenv("FERRYMAN_NOTIFY_POLL_S", "600")  # a pass as it starts, then none till the stop
    home = tmp_path / "home"
    home.mkdir()
    config = '{"count": 3000000, "state_every": 100000}'
    cli(home, "sources", "create", "src", "--connector", "builtin:source-bench", "--config", config)
    cli(home, "destinations", "create", "dst", "--connector", "builtin:destination-devnull")
    cli(home, "connections", "create", "c", "--source", "src", "--destination", "dst")
    with receiving() as receiver:
        cli(home, "notifications", "add", "--url", receiver.url(), "--format", "json", "--on", "success")
        with running_server(home, "--auth", "none") as server, httpx.Client(base_url=server.v1) as api:
            connection = api.get("/connections").json()["data"][0]["connectionId"]
            job = api.post("/jobs", json={"connectionId": connection, "jobType": "sync"}).json()["jobId"]
            while not psutil.Process(server.process.pid).children(recursive=True):
                time.sleep(0.05)  # the sync's connectors run: the test timeout bounds the wait
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=240) == 0
        posted = receiver.bodies()
    assert "waiting for 1 running attempt" in (home / "server.log").read_text()
    assert [(body["event"], body["job"]["jobId"]) for body in posted] == [("success", job)]


def test_webhooks_are_managed_through_the_api_without_showing_their_urls(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with (
        running_server(home, "--auth", "none", "--no-notifications") as server,
        httpx.Client(base_url=server.v1) as api,
    ):
        made = api.post(HOOKS, json={"url": f"https://hooks.slack.com{TOKEN_PATH}", "events": ["failure"]})
        assert made.status_code == 200, made.text
        hook = made.json()
        assert hook["url"] == "https://hooks.slack.com/..." and hook["format"] == "slack"
        assert "connectionId" not in hook  # every connection of the workspace
        assert api.get(f"{HOOKS}/{hook['notificationId']}").json() == hook
        assert api.post(HOOKS, json={"url": "ftp://x/yyyyyy"}).status_code == 422
        assert api.post(HOOKS, json={"url": "https://x:443a/yyyyyy"}).status_code == 422
        assert api.post(HOOKS, json={"url": "https://x/y", "events": ["sometimes"]}).status_code == 422
        missing = "00000000-0000-0000-0000-000000000000"
        assert api.post(HOOKS, json={"url": "https://x/y", "connectionId": missing}).status_code == 404
        assert api.delete(f"{HOOKS}/{hook['notificationId']}").status_code == 204
        assert api.get(f"{HOOKS}/{hook['notificationId']}").status_code == 404
        assert api.get(HOOKS).json()["data"] == []
        assert "sEcReT" not in (home / "server.log").read_text()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:80a/hook",
        "http://user:pa55word/hook",
        "https://[::1/hook",
        "http://exa mple.com/hook",
    ],
)
def test_a_webhook_url_that_cannot_be_read_is_refused_in_one_line(tmp_path: Path, url: str) -> None:
    # It used to be stored, with a traceback: then `list` showed the traceback for ever, and the
    # dispatcher failed each pass on it.
    added = ferryman(tmp_path, "notifications", "add", "--url", url)
    assert added.returncode != 0
    assert added.stderr.startswith("error: invalid webhook URL") and len(added.stderr.splitlines()) == 1
    assert "pa55word" not in added.stderr  # a password where the port should be is not echoed
    assert cli(tmp_path, "notifications", "list", "--json").strip() == "[]"
