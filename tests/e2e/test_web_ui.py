"""The web UI in a real browser (Debian's Chromium, headless, driven by Playwright) on a real
``ferryman server``: log in, create a source through its spec form, a DuckDB destination and a
connection, Sync now and watch the log live until the job succeeds, edit the schedule and a sync
mode, cancel a long job, and check that a secret typed into a form reaches no page."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferryman.store import open_store
from tests.e2e.api_server import Server, ferryman, running_server
from tests.e2e.web_browser import PHONE, Screens, browser, new_page

SECRET = "sk-web-5f4dcc3b5aa765d61d8327deb882cf99"


@dataclass
class Site:
    server: Server
    client_id: str
    client_secret: str
    screens: Screens
    chromium: Any

    def api(self) -> httpx.Client:
        auth = httpx.BasicAuth(self.client_id, self.client_secret)
        return httpx.Client(base_url=self.server.url, auth=auth, timeout=60)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    home = tmp_path / "home"
    home.mkdir()
    created = ferryman(home, "applications", "create", "web", "--json")
    assert created.returncode == 0, created.stderr
    app = json.loads(created.stdout)
    with running_server(home) as server, browser() as chromium:
        yield Site(server, app["client_id"], app["client_secret"], Screens(tmp_path), chromium)


def log_in(site: Site, viewport: dict[str, int] | None = None) -> Any:
    page = new_page(site.chromium, site.server.url, **({"viewport": viewport} if viewport else {}))
    page.goto("/")
    assert page.url.endswith("/login?next=/")  # every page wants a login first
    page.fill("#client_id", site.client_id)
    page.fill("#client_secret", site.client_secret)
    page.click("button:has-text('Log in')")
    page.wait_for_selector("h1:has-text('Connections')")
    return page


def _seen(page: Any, pages: list[str]) -> None:
    pages.append(page.content())


def test_a_source_a_destination_a_connection_and_a_live_sync(site: Site) -> None:
    screens, seen = site.screens, []
    login = new_page(site.chromium, site.server.url)
    login.goto("/login")
    screens.take(login, "login")
    login.context.close()
    page = log_in(site)

    # A source through the form its spec makes: a secret field is a password input.
    page.click("a:has-text('Sources')")
    page.click("a:has-text('New source')")
    page.select_option("#connector", "builtin:source-bench")
    page.click("button:has-text('Next')")
    assert page.get_attribute("[name='cfg.api_key']", "type") == "password"
    assert page.input_value("[name='cfg.count']") == "1000"  # the spec's default
    page.fill("#name", "bench")
    page.fill("[name='cfg.count']", "3000")
    page.fill("[name='cfg.api_key']", SECRET)
    screens.take(page, "source-new")
    page.click("button:has-text('Save and test connection')")
    page.wait_for_selector(".verdict:has-text('Connection test succeeded')")
    screens.take(page, "check-job")
    _seen(page, seen)

    # The same name again: the form comes back with the error, the secret input empty.
    page.goto("/sources/new?connector=builtin:source-bench")
    page.fill("#name", "bench")
    page.fill("[name='cfg.api_key']", SECRET)
    page.click("button:has-text('Save')>>nth=1")
    page.wait_for_selector(".flash-error")
    assert "exists already" in page.inner_text(".flash-error")
    assert page.input_value("[name='cfg.api_key']") == ""
    _seen(page, seen)

    # A DuckDB destination and the connection between them.
    page.goto("/destinations/new")
    page.select_option("#connector", "builtin:destination-duckdb")
    page.click("button:has-text('Next')")
    page.fill("#name", "duck")
    page.fill("[name='cfg.path']", str(site.server.home / "out.duckdb"))
    page.click("button:has-text('Save')>>nth=1")
    page.wait_for_selector("h1:has-text('duck')")
    _seen(page, seen)
    page.click("a:has-text('Connections')")
    page.click("a:has-text('New connection')")
    page.fill("#name", "bench-to-duck")
    page.click("button:has-text('Create connection')")
    page.wait_for_selector("h1:has-text('bench-to-duck')")
    assert page.locator("#streams select").input_value() in (
        "full_refresh:overwrite",
        "incremental:append_dedup",
    )
    screens.take(page, "connection")
    connection_path = page.url.removeprefix(site.server.url)

    # Sync now: the job page follows its log live until the job succeeds.
    page.click("button:has-text('Sync now')")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    page.wait_for_selector("#log span")
    page.wait_for_selector("#job-status .badge-succeeded")
    assert "3,000" in page.inner_text(".figures")
    log_text = page.inner_text("#log")
    assert "replication" in log_text.lower() or "source" in log_text.lower()
    screens.take(page, "job")
    _seen(page, seen)
    job_path = page.url.removeprefix(site.server.url)

    # The job in the connection's history; the list shows its health and records.
    page.goto(connection_path)
    row = page.locator("#jobs tbody tr").first
    assert "succeeded" in row.inner_text() and "3,000" in row.inner_text()
    page.goto("/")
    listed = page.locator("table.list tbody tr").first
    assert "bench-to-duck" in listed.inner_text() and "3,000" in listed.inner_text()
    assert page.locator(".health-ok").count() == 1
    times = page.locator("table.list time").first
    assert "UTC" not in times.inner_text()  # shown in the browser's time zone
    screens.take(page, "connections")
    _seen(page, seen)

    # A cron schedule, and a stream mode, saved and shown again.
    page.goto(connection_path)
    page.check("#schedule-cron")
    page.fill("#cronExpression", "0 0 2 * * ?")
    page.click("button:has-text('Save schedule')")
    page.wait_for_selector(".flash-ok:has-text('cron 0 0 2 * * ?')")
    assert page.is_checked("#schedule-cron")
    assert "next run" in page.locator("p.sub").inner_text()  # planned by the scheduler's rules
    page.select_option("#streams select", "full_refresh:append")
    page.click("button:has-text('Save sync modes')")
    page.wait_for_selector(".flash-ok:has-text('Sync modes saved')")
    assert page.locator("#streams select").input_value() == "full_refresh:append"
    _seen(page, seen)
    with site.api() as api:
        (conn,) = api.get("/v1/connections").json()["data"]
        assert conn["schedule"] == {"scheduleType": "cron", "cronExpression": "0 0 2 * * ? UTC"}
        assert conn["nextSync"] is not None

    # Edit the source: its form comes filled with the stored config, the secret input empty; a
    # changed count is saved and the secret left empty keeps its stored value.
    page.goto("/sources/1")
    page.click("a:has-text('Edit')")
    page.wait_for_selector("h1:has-text('Edit source bench')")
    assert page.input_value("[name='cfg.count']") == "3000"
    assert page.input_value("[name='cfg.api_key']") == ""
    assert page.get_attribute("[name='cfg.api_key']", "required") is None
    page.fill("[name='cfg.count']", "2500")
    page.click("button:has-text('Save')>>nth=1")
    page.wait_for_selector(".flash-ok:has-text('Source bench saved')")
    _seen(page, seen)
    stored = open_store(f"sqlite:///{site.server.home / 'ferryman.db'}").get_actor("source", "bench").config
    assert stored["count"] == 2500 and stored["api_key"] == SECRET

    # The secret is nowhere: not in the pages seen, nor in any page, log or JSON fetched again.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    job_id = job_path.rsplit("/", 1)[1]
    fetched = []
    with httpx.Client(base_url=site.server.url, cookies=cookies, timeout=60) as client:
        paths = ["/", "/jobs", "/sources", "/sources/1", "/destinations", connection_path, job_path]
        paths += ["/sources/1/edit"]
        paths += [f"/jobs/{job_id}/log/stream?attempt=0", f"/jobs/{job_id}/attempts/0/log", "/jobs/1"]
        for path in paths:
            answer = client.get(path)
            assert answer.status_code == 200, path
            fetched.append(answer.text)
    with site.api() as api:
        fetched += [api.get("/v1/sources").text, api.get(f"/v1/ferryman/jobs/{job_id}/attempts").text]
    assert "**********" in fetched[3]  # the source's page shows the field, masked
    for text in seen + fetched:
        assert SECRET not in text
    page.context.close()


def test_a_long_sync_is_cancelled_from_its_page(site: Site) -> None:
    with site.api() as api:
        workspace = api.get("/v1/workspaces").json()["data"][0]["workspaceId"]
        source = api.post(
            "/v1/sources",
            json={"name": "endless", "workspaceId": workspace,
                  "configuration": {"sourceType": "bench", "count": 500_000_000}},
        ).json()  # fmt: skip
        destination = api.post(
            "/v1/destinations",
            json={"name": "null", "workspaceId": workspace, "configuration": {"destinationType": "dev-null"}},
        ).json()
        conn = api.post(
            "/v1/connections",
            json={
                "sourceId": source["sourceId"],
                "destinationId": destination["destinationId"],
                "name": "long",
            },
        )
        assert conn.status_code == 200, conn.text
    page = log_in(site)
    page.click("a:has-text('long')")
    page.click("button:has-text('Sync now')")
    page.wait_for_selector(".live:has-text('following')")
    page.wait_for_selector("#log span")
    site.screens.take(page, "job-running")
    page.click("button:has-text('Cancel')")
    page.wait_for_selector("#job-status .badge-cancelled")
    assert "manual_cancellation" in page.inner_text(".failure")
    page.click("a:has-text('long')")
    assert page.locator(".health-cancelled").count() == 1
    page.context.close()


def test_a_phone_gets_every_page_without_sideways_scrolling_and_keys_reach_sync(site: Site) -> None:
    with site.api() as api:
        workspace = api.get("/v1/workspaces").json()["data"][0]["workspaceId"]
        source = api.post(
            "/v1/sources",
            json={
                "name": "small",
                "workspaceId": workspace,
                "configuration": {"sourceType": "bench", "count": 5},
            },
        ).json()
        destination = api.post(
            "/v1/destinations",
            json={"name": "null", "workspaceId": workspace, "configuration": {"destinationType": "dev-null"}},
        ).json()
        api.post(
            "/v1/connections",
            json={"sourceId": source["sourceId"], "destinationId": destination["destinationId"]},
        )
    page = log_in(site, viewport=PHONE)
    shots = [("/", "phone-connections"), ("/connections/1", "phone-connection")]
    shots.append(("/sources/new?connector=builtin:source-bench", "phone-source-new"))
    for path, name in shots:
        page.goto(path)
        wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"{path} scrolls sideways by {wide}px on a phone"
        site.screens.take(page, name)
    # Keyboard only: Tab from the top of the connection's page reaches Sync now; Enter runs it.
    page.goto("/connections/1")
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Sync now":
            break
    else:
        raise AssertionError("Sync now cannot be reached with the keyboard")
    page.keyboard.press("Enter")
    page.wait_for_selector("#job-status .badge-succeeded")
    # The state that sync committed, cleared after a confirmation; then a reset, confirmed too.
    page.goto("/connections/1")
    assert "stream_0" in (page.text_content("#state pre") or "")
    page.click("a:has-text('Clear state')")
    page.click("button:has-text('Clear state')")
    page.wait_for_selector(".flash-ok:has-text('State cleared.')")
    assert "No state" in page.inner_text("#state")
    page.click("a:has-text('Reset')")
    site.screens.take(page, "phone-confirm-reset")
    page.click("button:has-text('Reset')")
    page.wait_for_selector("#job-status .badge-succeeded")
    assert "reset_connection" in page.inner_text("h1")
    page.context.close()
