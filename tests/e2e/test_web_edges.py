"""The web UI where a careless or hostile user pushes it, over HTTP against a real ``ferryman
server`` and the scripted exec: source: many dropped live-log streams of a quiet job, a page of
another site making the server run a program, secret fields that are not one-line strings."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import scripted_source
from tests.e2e.api_server import Server, running_server

THREAD_POOL = 40  # worker threads Starlette runs sync routes in, shared by every page and the API
SPEC = {
    "connectionSpecification": {
        "type": "object",
        "properties": {
            "host": {"type": "string"},
            "steps": {"type": "array"},
        },
    }
}


@dataclass
class Site:
    server: Server
    connector: str  # exec: reference of the scripted source
    tmp: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=60)


def _serve(tmp_path: Path, spec: dict[str, object]) -> Iterator[Site]:
    home = tmp_path / "home"
    home.mkdir()
    script = scripted_source(tmp_path)
    with running_server(home, env={"SCRIPTED_SPEC_STEPS": json.dumps([{"spec": spec}])}) as server:
        yield Site(server, f"exec:{script}", tmp_path)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    yield from _serve(tmp_path, SPEC)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_live_logs_of_a_quiet_job_left_by_many_reloads_do_not_stop_the_server(site: Site) -> None:
    with site.client() as client:
        token = _csrf(client.get("/sources/new", params={"connector": "builtin:source-bench"}).text)
        # A source whose connection test says one line, then nothing for ten minutes.
        steps = json.dumps([{"log": "checking"}, {"sleep": 600}])
        form = {"csrf": token, "connector": site.connector, "name": "quiet", "cfg.steps": steps, "test": "1"}
        created = client.post("/sources/new", data=form)
        assert created.status_code == 303, created.text
        job = created.headers["location"]  # /jobs/N

        def open_then_leave() -> None:
            # What a reload of the job's page does to its live log: open it, read what is
            # there, go away while the job is still quiet.
            with client.stream("GET", f"{job}/log/stream") as stream:
                for line in stream.iter_lines():
                    if "checking" in line:
                        return

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: open_then_leave(), range(THREAD_POOL + 5)))

        # The server still answers, pages and API alike (it used to hang until the job spoke).
        assert client.get("/jobs", timeout=15).status_code == 200
        assert client.get("/v1/health", timeout=15).status_code == 200
        page = client.get(job, timeout=15)
        assert page.status_code == 200 and "checking" in page.text
        client.post(f"{job}/cancel", data={"csrf": token})


def test_a_page_of_another_site_cannot_make_the_server_run_or_install_a_connector(site: Site) -> None:
    ran = site.tmp / "ran"
    script = scripted_source(site.tmp, "marking-source", first=f'touch "{ran}"')
    reference = f"exec:{script}"
    # What <img src="http://127.0.0.1:8000/sources/new?connector=..."> on any web page sends
    # (no cookie needed when the server asks for no login); pypi:ANY-PACKAGE would install it.
    drive_by = httpx.get(
        f"{site.server.url}/sources/new",
        params={"connector": reference},
        headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "image"},
        timeout=60,
    )
    assert drive_by.status_code == 200
    assert not ran.exists(), "a GET from another site ran the connector"
    assert f'value="{reference}"' in drive_by.text  # the reference is offered: Next reads it
    with site.client() as client:
        pick = client.get("/sources/new", params={"connector": reference})
        assert not ran.exists()
        refused = client.post("/sources/new/connector", data={"connector": reference})  # no token
        assert refused.status_code == 403 and not ran.exists()
        form = client.post("/sources/new/connector", data={"csrf": _csrf(pick.text), "connector": reference})
        assert form.status_code == 200 and ran.exists()
        assert 'name="cfg.host"' in form.text  # the form made from its spec
        # A listed connector (built in) still opens its form from a link.
        listed = client.get("/sources/new", params={"connector": "builtin:source-bench"})
        assert 'name="cfg.count"' in listed.text


KEY = "\n".join(
    [
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjEAAAAA",
        "QyNTUxOQAAACD3x9e0",
        "-----END OPENSSH PRIVATE KEY-----",
    ]
)
TOKENS = ["tok-alpha-4f1c9e", "tok-beta-77d0aa"]
SECRET_SPEC = {
    "connectionSpecification": {
        "type": "object",
        "required": ["host"],
        "properties": {
            "host": {"type": "string"},
            "ssh_key": {"type": "string", "airbyte_secret": True, "multiline": True},
            "tokens": {"type": "array", "items": {"type": "string"}, "airbyte_secret": True},
        },
    }
}


@pytest.fixture
def secret_site(tmp_path: Path) -> Iterator[Site]:
    yield from _serve(tmp_path, SECRET_SPEC)


def test_a_pasted_private_key_keeps_its_lines_and_a_secret_list_survives_an_edit(secret_site: Site) -> None:
    from ferryman.store import open_store
    from tests.e2e.web_browser import browser, new_page

    site = secret_site
    store = open_store(f"sqlite:///{site.server.home / 'ferryman.db'}")
    with browser() as chromium:
        page = new_page(chromium, site.server.url)
        page.goto("/sources/new")
        page.fill("#reference", site.connector)
        page.click("button:has-text('Next') >> nth=1")
        page.fill("#name", "tunnelled")
        page.fill("[name='cfg.host']", "db1")
        page.fill("[name='cfg.ssh_key']", KEY)  # pasted as it is, over four lines
        page.fill("[name='cfg.tokens']", "\n".join(TOKENS))
        page.click("button:has-text('Save') >> nth=1")
        page.wait_for_selector("h1:has-text('tunnelled')")
        config = store.get_actor("source", "tunnelled").config
        assert config == {"host": "db1", "ssh_key": KEY, "tokens": TOKENS}

        # Edit the host only: the secrets are neither shown nor lost.
        page.click("a:has-text('Edit')")
        edit = page.content()
        assert "**********" not in edit and TOKENS[0] not in edit and "BEGIN OPENSSH" not in edit
        page.fill("[name='cfg.host']", "db2")
        page.click("button:has-text('Save') >> nth=1")
        page.wait_for_selector("h1:has-text('tunnelled')")
        assert store.get_actor("source", "tunnelled").config == {
            "host": "db2",
            "ssh_key": KEY,
            "tokens": TOKENS,
        }


def test_a_job_page_of_a_50_mb_log_of_long_lines_holds_its_tail_not_the_log(site: Site) -> None:
    from ferryman.store import open_store
    from tests.e2e.test_cli_jobs import wait_for

    store = open_store(f"sqlite:///{site.server.home / 'ferryman.db'}")
    with site.client() as client:
        token = _csrf(client.get("/sources/new", params={"connector": "builtin:source-bench"}).text)
        # 850 lines of 60 kB on stderr (each line is logged whole up to 64 kB): ~51 MB.
        steps = json.dumps([{"stderr": "x" * 60_000, "repeat": 850}, {"log": "last words"}])
        form = {"csrf": token, "connector": site.connector, "name": "chatty", "cfg.steps": steps, "test": "1"}
        job = client.post("/sources/new", data=form).headers["location"]
        job_id = int(job.rsplit("/", 1)[1])
        wait_for(lambda: store.get_job(job_id).status.terminal, "the connection test to end")
        log = Path(store.list_attempts(job_id)[-1].log_path)
        assert log.stat().st_size > 50_000_000
        page = client.get(job)
        assert page.status_code == 200 and "last words" in page.text
        assert len(page.content) < 2_000_000  # it was the whole 51 MB, after half a minute
        download = client.get(f"{job}/attempts/0/log")
        assert len(download.content) >= log.stat().st_size  # the whole log is in the download
        # The API's tails too: Airflow's and Dagster's clients poll /api/v1/jobs/get, which held
        # the last 1,000 lines of each attempt's log (here 60 MB) in every answer.
        for answer in (
            client.post("/api/v1/jobs/get", json={"id": job_id}),
            client.get(f"/v1/ferryman/jobs/{job_id}/log", params={"lines": 10_000}),
        ):
            assert answer.status_code == 200, answer.text[:200]
            assert len(answer.content) < 2_000_000 and "last words" in answer.text


def test_the_list_of_a_thousand_sources_each_in_a_connection_opens_at_once(site: Site) -> None:
    from ferryman.store import open_store

    store = open_store(f"sqlite:///{site.server.home / 'ferryman.db'}")
    # Seeded through the store: a thousand sources made through the form would take minutes.
    sink = store.create_actor("destination", "sink", "builtin:destination-devnull", {})
    for i in range(1000):
        source = store.create_actor("source", f"source {i:04d}", site.connector, {"host": f"h{i}"})
        store.create_connection(f"connection {i:04d}", source.id, sink.id, {"streams": []})
    with site.client() as client:
        page = client.get("/sources", timeout=10)  # it took a minute: a read of every connection per source
        assert page.status_code == 200
        counts = re.findall(r'<td class="num">(\d+)</td>', page.text)
        assert counts == ["1"] * 1000  # each source is in one connection
        sinks = client.get("/destinations", timeout=10)
        assert re.findall(r'<td class="num">(\d+)</td>', sinks.text) == ["1000"]


def test_a_job_page_left_open_does_not_keep_the_server_from_stopping(tmp_path: Path) -> None:
    import signal
    import subprocess

    home = tmp_path / "home"
    home.mkdir()
    # No engine here: the connection test below stays pending for as long as the server runs.
    with (
        running_server(home, "--no-engine") as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        token = _csrf(client.get("/sources/new", params={"connector": "builtin:source-bench"}).text)
        form = {"csrf": token, "connector": "builtin:destination-devnull", "name": "sink", "test": "1"}
        job = client.post("/destinations/new", data=form).headers["location"]
        with client.stream("GET", f"{job}/log/stream") as stream:  # the open job page's live log
            assert stream.status_code == 200
            server.process.send_signal(signal.SIGTERM)
            try:
                code = server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.kill()
                raise AssertionError("the server did not stop while a job page was open") from None
        assert code == 0


WHERE_JS = """([cell, name]) => {
    // The left edge, on screen, of the text ``name`` inside ``cell`` (whatever elements hold it).
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const at = node.data.indexOf(name);
        if (at < 0) continue;
        const range = document.createRange();
        range.setStart(node, at);
        range.setEnd(node, at + name.length);
        return range.getBoundingClientRect().left;
    }
    return null;
}"""


def test_right_to_left_names_read_source_then_destination(site: Site) -> None:
    from ferryman.store import open_store
    from tests.e2e.web_browser import browser, new_page

    store = open_store(f"sqlite:///{site.server.home / 'ferryman.db'}")
    source = store.create_actor("source", "מקור", site.connector, {})  # Hebrew: "source"
    sink = store.create_actor("destination", "יעד", "builtin:destination-devnull", {})  # "target"
    store.create_connection("גיבוי", source.id, sink.id, {"streams": []})
    with browser() as chromium:
        page = new_page(chromium, site.server.url)
        for path in ("/", "/connections/1"):
            page.goto(path)
            cell = page.locator("td:has-text('→'), .sub:has-text('→')").first.element_handle()
            source_x = page.evaluate(WHERE_JS, [cell, "מקור"])
            sink_x = page.evaluate(WHERE_JS, [cell, "יעד"])
            # The page reads left to right: the source, the arrow, then the destination. Two
            # right-to-left names around an arrow used to swap places, the arrow still pointing
            # right: the connection read as going from its destination to its source.
            assert source_x is not None and sink_x is not None
            assert source_x < sink_x, path


def test_without_auth_a_request_for_another_host_name_is_refused(site: Site) -> None:
    # A page of rebound.example whose DNS now says 127.0.0.1: to the browser, this server is
    # that site, so the page could read the forms (and their CSRF tokens) and post them back.
    port = site.server.url.rsplit(":", 1)[1]
    rebound = {"Host": f"rebound.example:{port}", "Origin": f"http://rebound.example:{port}"}
    with site.client() as client:
        page = client.get("/sources/new", params={"connector": "builtin:source-bench"}, headers=rebound)
        assert page.status_code == 421 and "csrf" not in page.text
        assert "http://127.0.0.1:" in page.text  # says where to go instead
        assert client.get("/v1/sources", headers=rebound).status_code == 421
        token = _csrf(client.get("/sources/new", params={"connector": "builtin:source-bench"}).text)
        form = {"csrf": token, "connector": "builtin:destination-devnull", "name": "planted"}
        assert client.post("/destinations/new", data=form, headers=rebound).status_code == 421
        assert "planted" not in client.get("/destinations").text
        # The names of this machine are served as before.
        for name in ("localhost", "127.0.0.1", "app.localhost"):
            assert client.get("/", headers={"Host": f"{name}:{port}"}).status_code == 200, name


def test_a_job_page_shows_a_stream_name_and_failure_message_as_text_set_apart(site: Site) -> None:
    """A stream named with HTML and a right-to-left override, in a failure: escaped, and the name
    in <bdi>, so the override cannot reverse the rest of the line (`· retryable`). Before: the
    failure's stream was not set apart."""
    from tests.e2e.test_cli_jobs import Cli

    stream = "us<script>alert(1)</script>\u202eers"
    catalog = {"streams": [{"name": stream, "json_schema": {"type": "object"},
                            "supported_sync_modes": ["full_refresh"]}]}  # fmt: skip
    failure = {"failure_type": "system_error", "message": "<b>boom</b>\u202e",
               "stream_descriptor": {"name": stream}}  # fmt: skip
    config = {"discover_steps": [{"catalog": catalog}],
              "read_steps": [{"records": 1, "stream": stream}, {"trace_error": failure}]}  # fmt: skip
    cli = Cli(site.server.home, SYNC_JOB_MAX_ATTEMPTS="1")
    cli("sources", "create", "s", "--connector", site.connector, "--config", json.dumps(config))
    cli("destinations", "create", "d", "--connector", "builtin:destination-devnull", "--config", "{}")
    cli("connections", "create", "c", "--source", "s", "--destination", "d")
    cli("connections", "sync", "c", code=1)
    job_id = cli.json("jobs", "list", "--connection", "c")["jobs"][0]["id"]
    with site.client() as client:
        page = client.get(f"/jobs/{job_id}").text
    escaped = "us&lt;script&gt;alert(1)&lt;/script&gt;\u202eers"
    assert "<script>alert" not in page and "<b>boom" not in page
    assert f"stream <bdi>{escaped}</bdi> · retryable" in page
    assert f"<bdi>{escaped}</bdi></td>" in page  # the stats table's
    assert "&lt;b&gt;boom&lt;/b&gt;\u202e" in page
