"""A configuration checked against its connector's spec by a real ``ferryman server``: POST, PUT
and PATCH of sources and destinations, and the web UI's forms, refuse one that does not fulfill
the spec with a 422 problem naming each field (as Airbyte's "The provided configuration does not
fulfill the specification"), store nothing, and never answer with the value sent."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferryman.store import open_store
from tests.conftest import scripted_source
from tests.e2e.api_server import Server, ferryman, running_server
from tests.e2e.test_cli_config_check import SECRET, SPEC

GOOD = {"start_date": "2024-01-01", "credentials": {"auth_type": "key", "api_key": "sk-0123456789abcdef"}}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """A server whose ``vault`` source definition runs the scripted source with ``SPEC``."""
    home = tmp_path / "home"
    home.mkdir()
    script = scripted_source(tmp_path)
    added = ferryman(home, "definitions", "add", "vault", f"exec:{script}", "--kind", "source")
    assert added.returncode == 0, added.stderr
    with running_server(home, env={"SCRIPTED_SPEC_STEPS": json.dumps([{"spec": SPEC}])}) as server:
        yield server, f"exec:{script}"


def _stored(server: Server, kind: str = "source") -> list[Any]:
    return [a.config for a in open_store(f"sqlite:///{server.home / 'ferryman.db'}").list_actors(kind)]


def _refused(answer: httpx.Response) -> str:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert SECRET not in answer.text
    detail = answer.json()["detail"]
    assert detail.startswith("the configuration does not fulfill the specification of "), detail
    return str(detail.split(": ", 1)[1])


def test_create_put_and_patch_refuse_a_configuration_the_spec_does_not_allow(
    served: tuple[Server, str],
) -> None:
    server, _ = served
    with httpx.Client(base_url=server.v1, timeout=60) as client:
        workspace = client.get("/workspaces").json()["data"][0]["workspaceId"]

        def create(configuration: dict[str, Any]) -> httpx.Response:
            body = {
                "name": "vault",
                "workspaceId": workspace,
                "configuration": {"sourceType": "vault", **configuration},
            }
            return client.post("/sources", json=body)

        bad_key = {**GOOD, "credentials": {"auth_type": "key", "api_key": SECRET}}
        assert _refused(create(bad_key)) == "'credentials.api_key' must match the pattern ^sk-[a-z0-9]{16}$"
        assert _refused(create({"start_date": 20240101})) == (
            "'credentials' is required; 'start_date' must be a string"
        )
        assert _stored(server) == []

        created = create(GOOD)
        assert created.status_code == 200, created.text
        url = f"/sources/{created.json()['sourceId']}"
        shown = created.json()["configuration"]  # its key masked, as a client sends it back

        # PATCH merges, then checks what would be stored: the stored secret with the new fields.
        switched = {"credentials": {"auth_type": "oauth", "refresh_token": SECRET}}
        assert _refused(client.patch(url, json={"configuration": switched})) == (
            "'credentials.client_id' is required"
        )
        wrong_choice = {"credentials": {"auth_type": "basic"}}
        assert _refused(client.patch(url, json={"configuration": wrong_choice})) == (
            "'credentials' matches none of its choices (API key, OAuth): "
            "set 'credentials.auth_type' to one of 'key', 'oauth'"
        )
        put = client.put(url, json={"name": "vault", "configuration": {**shown, "start_date": "soon"}})
        assert _refused(put) == "'start_date' must be in the form YYYY-MM-DD"
        assert _stored(server) == [GOOD]

        # The masked key sent back stands for the stored one, which fulfils the spec.
        kept = client.put(url, json={"name": "vault", "configuration": {**shown, "start_date": "2025-02-03"}})
        assert kept.status_code == 200, kept.text
        assert _stored(server) == [{**GOOD, "start_date": "2025-02-03"}]
        assert SECRET.encode() not in (server.home / "ferryman.db").read_bytes()

        # A destination as well (the built-in DuckDB's spec).
        destination = client.post(
            "/destinations",
            json={
                "name": "duck",
                "workspaceId": workspace,
                "configuration": {"destinationType": "duckdb", "path": 5},
            },
        )
        assert _refused(destination) == "'path' must be a string"
        assert _stored(server, "destination") == []


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_the_web_form_shows_the_problem_without_the_secret_typed(served: tuple[Server, str]) -> None:
    server, connector = served
    with httpx.Client(base_url=server.url, timeout=60) as client:
        token = _csrf(client.get("/sources/new", params={"connector": connector}).text)
        form = {
            "csrf": token,
            "connector": connector,
            "name": "vault",
            "cfg.start_date": "2024-01-01",
            "cfg.credentials~": "0",
            "cfg.credentials~0.api_key": SECRET,
        }
        page = client.post("/sources/new", data=form)
        assert page.status_code == 422, page.text
        assert "&#39;credentials.api_key&#39; must match the pattern" in page.text
        assert SECRET not in page.text
        assert _stored(server) == []


def deep(levels: int) -> dict[str, Any]:
    config: dict[str, Any] = {}
    inner = config
    for _ in range(levels):
        inner["n"] = {}
        inner = inner["n"]
    return config


def test_a_configuration_nested_900_levels_deep_is_a_4xx_not_a_500(served: tuple[Server, str]) -> None:
    # Valid JSON, but what walks a config (its paths, the masking, the spec check) recursed past
    # Python's stack: a 500 with a RecursionError in the server's log.
    server, _ = served
    with httpx.Client(base_url=server.v1, timeout=60) as client:
        workspace = client.get("/workspaces").json()["data"][0]["workspaceId"]
        body = {
            "name": "deep",
            "workspaceId": workspace,
            "configuration": {"sourceType": "vault", **deep(900)},
        }
        answer = client.post("/sources", json=body)
        assert 400 <= answer.status_code < 500, answer.text
        # The body's guard answers first now (deeper than 400 levels), naming the 200 of a config.
        assert "nests more than" in answer.text and "200" in answer.text
        created = client.post("/sources", json={**body, "configuration": {"sourceType": "vault", **GOOD}})
        assert created.status_code == 200, created.text
        patched = client.patch(f"/sources/{created.json()['sourceId']}", json={"configuration": deep(900)})
        assert 400 <= patched.status_code < 500, patched.text
    assert _stored(server) == [GOOD]
