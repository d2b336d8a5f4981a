"""Secrets the connector's spec marks (in a oneOf, in an array's items) through the public API of
a real ``ferryman server``: masked in answers, kept when sent back masked, and a masked value
where nothing is stored refused rather than stored as the mask."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferryman.secrets import MASK
from ferryman.store import open_store
from tests.conftest import scripted_source
from tests.e2e.api_server import Server, ferryman, running_server

SPEC = {
    "connectionSpecification": {
        "type": "object",
        "properties": {
            "credentials": {
                "type": "object",
                "oneOf": [
                    {
                        "title": "Key",
                        "properties": {
                            "auth_type": {"type": "string", "const": "key"},
                            "key": {"type": "string", "airbyte_secret": True},
                        },
                    },
                    {
                        "title": "OAuth",
                        "properties": {
                            "auth_type": {"type": "string", "const": "oauth"},
                            "refresh": {"type": "string", "airbyte_secret": True},
                        },
                    },
                ],
            },
            "tunnels": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "ssh_pw": {"type": "string", "airbyte_secret": True},
                    },
                },
            },
        },
    }
}
STORED = {
    "credentials": {"auth_type": "oauth", "refresh": "refresh-secret-0f9e8d7c"},
    "tunnels": [{"name": "t1", "ssh_pw": "tunnel-secret-1a2b3c4d"}],
}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, httpx.Client]]:
    home = tmp_path / "home"
    home.mkdir()
    script = scripted_source(tmp_path)
    added = ferryman(home, "definitions", "add", "vault", f"exec:{script}", "--kind", "source")
    assert added.returncode == 0, added.stderr
    with (
        running_server(home, env={"SCRIPTED_SPEC_STEPS": json.dumps([{"spec": SPEC}])}) as server,
        httpx.Client(base_url=server.v1, timeout=60) as client,
    ):
        yield server, client


def _stored(server: Server) -> Any:
    return open_store(f"sqlite:///{server.home / 'ferryman.db'}").get_actor("source", "vault").config


def test_a_masked_secret_sent_back_where_nothing_is_stored_is_refused_not_stored(
    served: tuple[Server, httpx.Client],
) -> None:
    server, client = served
    workspace = client.get("/workspaces").json()["data"][0]["workspaceId"]
    created = client.post(
        "/sources",
        json={"name": "vault", "workspaceId": workspace, "configuration": {"sourceType": "vault", **STORED}},
    )
    assert created.status_code == 200, created.text
    shown = created.json()["configuration"]
    assert shown == {
        "credentials": {"auth_type": "oauth", "refresh": MASK},
        "tunnels": [{"name": "t1", "ssh_pw": MASK}],
    }
    url = f"/sources/{created.json()['sourceId']}"
    # Sent back as shown, everything stays as stored.
    assert client.patch(url, json={"configuration": shown}).status_code == 200
    assert _stored(server) == STORED

    # A tunnel put first while the stored one is renamed: which password the mask stands for
    # cannot be told. A key of the option switched to has none stored. Each is refused, naming
    # the field, and nothing is written.
    renamed = {"name": "t1-renamed", "ssh_pw": MASK}
    prepended = {**shown, "tunnels": [{"name": "t0", "ssh_pw": "new-secret-5e6f7a8b"}, renamed]}
    switched = {**shown, "credentials": {"auth_type": "key", "key": MASK}}
    for configuration, field in (
        (prepended, "configuration.tunnels[1].ssh_pw"),
        (switched, "configuration.credentials.key"),
    ):
        for method in ("PATCH", "PUT"):
            body = {"name": "vault", "configuration": configuration}
            refused = client.request(method, url, json=body)
            assert refused.status_code == 422, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert field in refused.json()["detail"] and "new-secret" not in refused.text
            assert _stored(server) == STORED


def test_a_patch_merges_the_fields_it_sends_into_the_stored_configuration_and_a_put_replaces_it(
    served: tuple[Server, httpx.Client],
) -> None:
    """As Airbyte's PATCH: a client that sends only the field it changes (an Airflow DAG moving a
    start date) keeps the rest, its secrets included; it used to replace the whole configuration,
    losing every field and secret it did not send. PUT stays a full replace."""
    server, client = served
    workspace = client.get("/workspaces").json()["data"][0]["workspaceId"]
    body = {"name": "vault", "workspaceId": workspace, "configuration": {"sourceType": "vault", **STORED}}
    created = client.post("/sources", json=body)
    assert created.status_code == 200, created.text
    url = f"/sources/{created.json()['sourceId']}"

    patched = client.patch(url, json={"configuration": {"start_date": "2026-01-01"}})
    assert patched.status_code == 200, patched.text
    assert _stored(server) == {**STORED, "start_date": "2026-01-01"}
    assert patched.json()["configuration"]["credentials"] == {"auth_type": "oauth", "refresh": MASK}

    # An object is merged key by key; an array is replaced whole.
    nested = {"credentials": {"auth_type": "oauth"}, "tunnels": [{"name": "t9", "ssh_pw": "pw-9f8e7d6c"}]}
    assert client.patch(url, json={"configuration": nested}).status_code == 200
    assert _stored(server) == {
        "credentials": STORED["credentials"],
        "tunnels": [{"name": "t9", "ssh_pw": "pw-9f8e7d6c"}],
        "start_date": "2026-01-01",
    }

    replaced = client.put(url, json={"name": "vault", "configuration": {"start_date": "2026-02-01"}})
    assert replaced.status_code == 200, replaced.text
    assert _stored(server) == {"start_date": "2026-02-01"}


def test_array_items_sent_back_masked_keep_their_own_secrets_when_others_are_removed_or_added(
    served: tuple[Server, httpx.Client],
) -> None:
    """A client that drops the first tunnel (or puts one before it) sends the others back as
    shown: each keeps its own password, never the one stored at its new place."""
    server, client = served
    workspace = client.get("/workspaces").json()["data"][0]["workspaceId"]
    tunnels = [
        {"name": "t1", "ssh_pw": "tunnel-secret-1a2b3c4d"},
        {"name": "t2", "ssh_pw": "tunnel-secret-5e6f7a8b"},
    ]
    configuration = {"sourceType": "vault", "credentials": STORED["credentials"], "tunnels": tunnels}
    created = client.post(
        "/sources", json={"name": "vault", "workspaceId": workspace, "configuration": configuration}
    )
    assert created.status_code == 200, created.text
    url = f"/sources/{created.json()['sourceId']}"
    shown = created.json()["configuration"]

    dropped = client.patch(url, json={"configuration": {**shown, "tunnels": shown["tunnels"][1:]}})
    assert dropped.status_code == 200, dropped.text
    assert _stored(server)["tunnels"] == tunnels[1:]

    new = {"name": "t0", "ssh_pw": "tunnel-secret-9a8b7c6d"}
    shown = dropped.json()["configuration"]
    added = client.put(
        url, json={"name": "vault", "configuration": {**shown, "tunnels": [new, *shown["tunnels"]]}}
    )
    assert added.status_code == 200, added.text
    assert _stored(server)["tunnels"] == [new, *tunnels[1:]]
    assert "tunnel-secret" not in added.text
