"""Secret fields that are not strings (an ``airbyte_secret`` integer, nested in an object) in the
web UI's forms, over HTTP against a real ``ferryman server`` and a scripted exec: source."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ferryman.store import open_store
from tests.conftest import scripted_source
from tests.e2e.api_server import Server, running_server

PIN = 98765432101
SPEC = {
    "connectionSpecification": {
        "type": "object",
        "required": ["host"],
        "properties": {
            "host": {"type": "string"},
            "vault": {
                "type": "object",
                "properties": {"pin": {"type": "integer", "airbyte_secret": True}},
            },
        },
    }
}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    home = tmp_path / "home"
    home.mkdir()
    script = scripted_source(tmp_path)
    with running_server(home, env={"SCRIPTED_SPEC_STEPS": json.dumps([{"spec": SPEC}])}) as server:
        yield server, f"exec:{script}"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_a_secret_number_is_a_password_input_and_an_edit_that_leaves_it_empty_keeps_it(
    served: tuple[Server, str],
) -> None:
    server, connector = served
    with httpx.Client(base_url=server.url, timeout=60) as client:
        token = _csrf(client.get("/sources/new", params={"connector": connector}).text)
        typed = {"csrf": token, "connector": connector, "name": "vaulted", "cfg.vault.pin": str(PIN)}
        # Refused (host is required): the page that says so does not show the pin typed.
        refused = client.post("/sources/new", data=typed)
        assert refused.status_code == 422 and "host is required" in refused.text
        assert str(PIN) not in refused.text
        created = client.post("/sources/new", data={**typed, "cfg.host": "h1"})
        assert created.status_code == 303, created.text
        source_id = created.headers["location"].rsplit("/", 1)[1]
        store = open_store(f"sqlite:///{server.home / 'ferryman.db'}")
        assert store.get_actor("source", "vaulted").config == {"host": "h1", "vault": {"pin": PIN}}

        edit = client.get(f"/sources/{source_id}/edit").text
        pin_input = re.search(r'<input [^>]*name="cfg\.vault\.pin"[^>]*>', edit)
        assert pin_input and 'type="password"' in pin_input.group(0)
        assert "value=" not in pin_input.group(0)  # neither the pin nor its mask
        # What a browser posts back when only the host changes: the pin's input left empty.
        saved = client.post(
            f"/sources/{source_id}/edit",
            data={"csrf": _csrf(edit), "connector": connector, "name": "vaulted", "cfg.host": "h2",
                  "cfg.vault.pin": "", "test": "0"},
        )  # fmt: skip
        assert saved.status_code == 303, saved.text
        assert store.get_actor("source", "vaulted").config == {"host": "h2", "vault": {"pin": PIN}}
        # Typed into, it replaces the stored pin, as a number.
        again = _csrf(client.get(f"/sources/{source_id}/edit").text)
        form = {"csrf": again, "connector": connector, "name": "vaulted", "cfg.host": "h2", "test": "0"}
        assert (
            client.post(f"/sources/{source_id}/edit", data={**form, "cfg.vault.pin": "42"}).status_code == 303
        )
        assert store.get_actor("source", "vaulted").config == {"host": "h2", "vault": {"pin": 42}}
