"""airbyte-source-faker (PyPI) set up entirely in the web UI, in Debian's Chromium: its form is made
from its spec, the connection to DuckDB syncs, and the job page shows each stream's records."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from ferryman.connectors import ResolvedConnector
from tests.conftest import FAKER_REF
from tests.e2e.api_server import ferryman, running_server
from tests.e2e.test_web_ui import Site, log_in
from tests.e2e.web_browser import Screens, browser

pytestmark = pytest.mark.slow


@pytest.fixture
def site(tmp_path: Path, venvs_dir: Path, faker: ResolvedConnector) -> Iterator[Site]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "venvs").symlink_to(venvs_dir)  # faker is installed once per session
    assert ferryman(home, "definitions", "add", "faker", FAKER_REF).returncode == 0
    app = json.loads(ferryman(home, "applications", "create", "web", "--json").stdout)
    with running_server(home) as server, browser() as chromium:
        yield Site(server, app["client_id"], app["client_secret"], Screens(tmp_path), chromium)


def test_faker_from_its_form_syncs_into_duckdb(site: Site) -> None:
    page = log_in(site)
    page.goto("/sources/new")
    page.select_option("#connector", FAKER_REF)
    page.click("button:has-text('Next')")
    assert page.input_value("[name='cfg.count']") == "1000"  # faker's spec default
    page.fill("#name", "faker")
    page.fill("[name='cfg.count']", "200")
    site.screens.take(page, "faker-source-new")
    page.click("button:has-text('Save and test connection')")
    page.wait_for_selector(".verdict:has-text('Connection test succeeded')")
    out = site.server.home / "faker.duckdb"
    page.goto("/destinations/new?connector=builtin:destination-duckdb")
    page.fill("#name", "duck")
    page.fill("[name='cfg.path']", str(out))
    page.click("button:has-text('Save')>>nth=1")
    page.goto("/connections/new")
    page.fill("#name", "faker-to-duck")
    page.click("button:has-text('Create connection')")
    page.wait_for_selector("h1:has-text('faker-to-duck')")
    page.click("button:has-text('Sync now')")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    page.wait_for_selector("#job-status .badge-succeeded")
    stats = page.inner_text(".attempt table")
    assert "users" in stats and "200" in stats
    site.screens.take(page, "faker-job")
    page.context.close()
    with duckdb.connect(str(out), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM main.users").fetchone() == (200,)
