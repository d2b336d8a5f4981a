"""Requests that race each other on a real ``ferryman server``, on SQLite and on Postgres: what
each client is told happened is what the store holds afterwards."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from ferryman.store import open_store
from tests.contract.store_support import store_url
from tests.e2e.api_server import Server, running_server

__all__ = ["store_url"]  # the fixture: one fresh SQLite file or Postgres database per test

CLIENTS = 20
SECRET = "first-secret-1a2b3c"
NEW_SECRET = "second-secret-4d5e6f"
MASK = "**********"


@pytest.fixture
def served(store_url: str, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """An API-only server (no engine: nothing here runs a job) on a fresh store."""
    with running_server(tmp_path, "--auth", "none", "--no-engine", database_url=store_url) as server:
        yield server, store_url


def _at_once(count: int, request: Any) -> list[httpx.Response]:
    """``request(client, i)`` for i in 0..count-1, each on its own thread and connection, all
    released together."""
    start = threading.Barrier(count)

    def one(i: int) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            start.wait()
            return request(client, i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_patches_sent_at_once_each_keep_their_change_and_the_secret(served: tuple[Server, str]) -> None:
    """Each client PATCHes the field it changes, sending the secret back masked; one of them also
    sets a new secret. The configuration was read, merged and written back by each request in
    turn: a PATCH merged into a configuration read before another's write undid that write
    (fields lost, all answered 200), and a mask restored the secret as read (the new one lost)."""
    server, url = served
    with httpx.Client(base_url=server.v1, timeout=60) as client:
        workspace = client.get("/workspaces").json()["data"][0]["workspaceId"]
        configuration = {"sourceType": "bench", "count": 5, "api_key": SECRET}
        created = client.post(
            "/sources", json={"name": "s", "workspaceId": workspace, "configuration": configuration}
        )
        assert created.status_code == 200, created.text
        source = f"{server.v1}/sources/{created.json()['sourceId']}"

    def patch(client: httpx.Client, i: int) -> httpx.Response:
        secret = NEW_SECRET if i == 0 else MASK
        return client.patch(source, json={"configuration": {f"field_{i}": i, "api_key": secret}})

    answers = _at_once(CLIENTS, patch)
    assert [a.status_code for a in answers] == [200] * CLIENTS, [a.text for a in answers]
    with open_store(url) as store:
        stored = store.get_actor("source", "s").config
    assert {key: stored.get(key) for key in (f"field_{i}" for i in range(CLIENTS))} == {
        f"field_{i}": i for i in range(CLIENTS)
    }
    assert stored["count"] == 5
    # Whatever order they landed in, the new secret was not replaced by the old one restored
    # from a mask: the masked PATCHes keep the newest value stored when each one is written.
    assert stored["api_key"] == NEW_SECRET
    assert all(SECRET not in a.text and NEW_SECRET not in a.text for a in answers)
