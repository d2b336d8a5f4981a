"""Text a store cannot keep, sent to a real ``ferryman server`` on SQLite and on Postgres: a lone
surrogate (JSON's ``\\ud800`` escape without its pair) anywhere in a body, a NUL in a
configuration, a connection's prefix or an id. Each is one 422 (or the 404/403 any unknown id
gets) with Airbyte's problem body, the same on both stores; nothing is stored, and the server's
log holds no traceback.

Bodies are sent as raw bytes: httpx's JSON encoder would not write a lone surrogate."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.contract.store_support import ENGINES, fresh_database
from tests.e2e.api_server import Server, running_server


@pytest.fixture(scope="module", params=ENGINES)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per store for the module (what its tests store is refused, or checked)."""
    home = tmp_path_factory.mktemp(f"hostile-{request.param}")
    with (
        fresh_database(request.param, home) as url,
        running_server(home, "--auth", "none", database_url=url) as srv,
    ):
        yield srv


@pytest.fixture(scope="module")
def seeded(served: Server) -> dict[str, str]:
    """A source (with a secret), a destination and a connection between them."""
    with httpx.Client(base_url=served.v1, timeout=60) as client:
        workspace = client.get("/workspaces").json()["data"][0]["workspaceId"]
        source = client.post(
            "/sources",
            json={
                "name": "src",
                "workspaceId": workspace,
                "configuration": {"sourceType": "bench", "count": 5, "api_key": "kept-secret-9z"},
            },
        )
        assert source.status_code == 200, source.text
        destination = client.post(
            "/destinations",
            json={"name": "dst", "workspaceId": workspace, "configuration": {"destinationType": "dev-null"}},
        )
        assert destination.status_code == 200, destination.text
        ids = {"workspace": workspace, "source": source.json()["sourceId"]}
        ids["destination"] = destination.json()["destinationId"]
        conn = client.post(
            "/connections", json={"sourceId": ids["source"], "destinationId": ids["destination"]}
        )
        assert conn.status_code == 200, conn.text
        ids["connection"] = conn.json()["connectionId"]
        return ids


def _send(server: Server, method: str, path: str, raw: str) -> httpx.Response:
    """``raw`` JSON text as the body, byte for byte."""
    return httpx.request(
        method,
        f"{server.v1}{path}",
        content=raw.encode(),
        headers={"content-type": "application/json"},
        timeout=60,
    )


def _problem(response: httpx.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    detail: str = response.json()["detail"]
    assert "\n" not in detail and "Traceback" not in detail
    for word in words:
        assert word in detail, detail
    return detail


def _state(server: Server, connection: str) -> Any:
    return httpx.get(f"{server.v1}/ferryman/connections/{connection}/state").json()["state"]


def _no_traceback(server: Server) -> None:
    log = (server.home / "server.log").read_text(errors="replace")
    assert "Traceback" not in log and " failed: " not in log, log[-3000:]


def test_a_lone_surrogate_anywhere_in_a_body_is_one_422_naming_where(
    served: Server, seeded: dict[str, str]
) -> None:
    """It was a 500 (the store's JSON writer cannot encode it) in a configuration or a state,
    and a codec's message in a name; it would have been stored nowhere, but the client was told
    of a server fault."""
    workspace, source, connection = seeded["workspace"], seeded["source"], seeded["connection"]
    config = '{"sourceType": "bench", "count": 5, "tunnel": {"host": "a\\ud800b"}}'
    created = _send(
        served,
        "POST",
        "/sources",
        f'{{"name": "s2", "workspaceId": "{workspace}", "configuration": {config}}}',
    )
    _problem(created, 422, "lone surrogate (\\ud800)", "configuration.tunnel.host")

    patched = _send(served, "PATCH", f"/sources/{source}", '{"configuration": {"count": "\\udfff"}}')
    _problem(patched, 422, "lone surrogate (\\udfff)", "configuration.count")
    renamed = _send(served, "PATCH", f"/connections/{connection}", '{"name": "c\\udc00"}')
    _problem(renamed, 422, "lone surrogate", "at name")
    state_before = _state(served, connection)
    state = _send(
        served,
        "PUT",
        f"/ferryman/connections/{connection}/state",
        '{"state": [{"type": "LEGACY", "data": {"c": "\\ud83d"}}]}',
    )
    _problem(state, 422, "lone surrogate", "state[0].data.c")

    # A pair is a character, not a fault: the same body with both halves is taken.
    paired = _send(served, "PATCH", f"/connections/{connection}", '{"name": "c \\ud83d\\ude00"}')
    assert paired.status_code == 200 and paired.json()["name"] == "c \N{GRINNING FACE}", paired.text
    # An escaped backslash before "ud800" is a backslash and text, not an escape.
    literal = _send(served, "PATCH", f"/connections/{connection}", '{"name": "c \\\\ud800"}')
    assert literal.status_code == 200 and literal.json()["name"] == "c \\ud800", literal.text

    names = [s["name"] for s in httpx.get(f"{served.v1}/sources").json()["data"]]
    assert names == ["src"]
    stored = httpx.get(f"{served.v1}/sources/{source}").json()["configuration"]
    assert stored["count"] == 5
    assert _state(served, connection) == state_before
    _no_traceback(served)


def test_a_nul_in_a_configuration_is_refused_on_every_store(served: Server, seeded: dict[str, str]) -> None:
    """Postgres stored U+FFFD in its place (a secret silently changed), SQLite the NUL: the same
    request now gets the same 422 on both, naming the field and never its value."""
    workspace, source = seeded["workspace"], seeded["source"]
    config = '{"sourceType": "bench", "count": 5, "api_key": "se\\u0000cret-7q"}'
    created = _send(
        served,
        "POST",
        "/sources",
        f'{{"name": "s3", "workspaceId": "{workspace}", "configuration": {config}}}',
    )
    detail = _problem(created, 422, "NUL character", "at api_key")
    assert "cret-7q" not in detail

    by_key = _send(served, "PATCH", f"/sources/{source}", '{"configuration": {"extra\\u0000": 1}}')
    _problem(by_key, 422, "NUL character", "the key extra\\x00")
    replaced = _send(
        served,
        "PUT",
        f"/sources/{source}",
        '{"name": "src", "configuration": {"count": 5, "api_key": "x\\u0000"}}',
    )
    _problem(replaced, 422, "NUL character", "at api_key")

    names = [s["name"] for s in httpx.get(f"{served.v1}/sources").json()["data"]]
    assert names == ["src"]
    stored = httpx.get(f"{served.v1}/sources/{source}").json()["configuration"]
    assert set(stored) == {"count", "api_key"} and stored["count"] == 5
    _no_traceback(served)


def test_a_control_character_in_a_connections_prefix_or_namespace_format_is_refused(
    served: Server, seeded: dict[str, str]
) -> None:
    """Postgres refused a NUL with a message naming no field; SQLite stored it into every table
    name the connection's syncs would create."""
    connection = seeded["connection"]
    prefix = _send(served, "PATCH", f"/connections/{connection}", '{"prefix": "raw\\u0000_"}')
    _problem(prefix, 422, "prefix", "control character")
    layout = _send(
        served,
        "PATCH",
        f"/connections/{connection}",
        '{"namespaceDefinition": "custom_format", "namespaceFormat": "x\\u0000${SOURCE_NAMESPACE}"}',
    )
    _problem(layout, 422, "namespace format", "control character")
    stored = httpx.get(f"{served.v1}/connections/{connection}").json()
    assert stored.get("prefix", "") == "" and stored.get("namespaceDefinition") == "destination", stored
    _no_traceback(served)


def test_an_id_with_a_nul_names_nothing(served: Server, seeded: dict[str, str]) -> None:
    """On Postgres these were 422s about the store ("a text value holds a NUL"); an id that
    names nothing is a 404, a client id a 403, a configId no job, as on SQLite."""
    _problem(httpx.get(f"{served.v1}/sources/a%00b"), 404, "no source")
    _problem(httpx.get(f"{served.v1}/connections/%00"), 404, "no connection")
    _problem(httpx.delete(f"{served.v1}/destinations/x%00"), 404, "no destination")
    token = httpx.post(f"{served.url}/applications/token", json={"client_id": "a\x00", "client_secret": "b"})
    _problem(token, 403, "unknown client_id")
    listed = httpx.post(f"{served.url}/api/v1/jobs/list", json={"configTypes": ["sync"], "configId": "c\x00"})
    assert listed.status_code == 200 and listed.json() == {"jobs": [], "totalJobCount": 0}, listed.text
    _no_traceback(served)


def test_a_number_json_has_not_is_one_422_not_stored_as_null(served: Server, seeded: dict[str, str]) -> None:
    """FastAPI reads bodies with Python's json, which takes NaN, Infinity and 1e999 as floats;
    written to the store they became null: a config the connector ran with was not the one sent."""
    workspace, source, connection = seeded["workspace"], seeded["source"], seeded["connection"]
    config = '{"sourceType": "bench", "count": 5, "ratio": NaN}'
    created = _send(
        served,
        "POST",
        "/sources",
        f'{{"name": "s3", "workspaceId": "{workspace}", "configuration": {config}}}',
    )
    _problem(created, 422, "not valid JSON: NaN is not a JSON number")
    patched = _send(served, "PATCH", f"/sources/{source}", '{"configuration": {"limit": -Infinity}}')
    _problem(patched, 422, "-Infinity is not a JSON number")
    huge = _send(served, "PATCH", f"/sources/{source}", '{"configuration": {"limit": 1e999}}')
    _problem(huge, 422, "1e999 is beyond the range of a JSON number")
    state = _send(
        served,
        "PUT",
        f"/ferryman/connections/{connection}/state",
        '{"state": [{"type": "LEGACY", "data": {"c": NaN}}]}',
    )
    _problem(state, 422, "NaN is not a JSON number")
    # The words in a string are text, and a large but finite exponent is a number.
    fine = _send(
        served,
        "PATCH",
        f"/sources/{source}",
        '{"configuration": {"note": "NaN Infinity 1e999", "big": 1e300}}',
    )
    assert fine.status_code == 200, fine.text
    stored = httpx.get(f"{served.v1}/sources/{source}").json()["configuration"]
    # JSONB keeps 1e300 as a numeric, read back as the integer 10**300: the same number.
    assert stored["note"] == "NaN Infinity 1e999" and float(stored["big"]) == 1e300 and "limit" not in stored
    assert [s["name"] for s in httpx.get(f"{served.v1}/sources").json()["data"]] == ["src"]
    _no_traceback(served)
