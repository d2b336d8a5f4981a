"""Two streams of one name in two namespaces (a Postgres source's ``public.users`` and
``crm.users``), chosen on every surface as a user would: the CLI, the API and the web form, each
against the scripted source (a real connector process) discovering them.

Airbyte identifies a stream by (namespace, name); naming one of them must never pick both, and
a mode given to one must never land on the other.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.e2e.api_server import ferryman, running_server
from tests.e2e.test_cli_sync_modes import USERS, executable, setup

PUBLIC = {**USERS, "namespace": "public"}
CRM = {**USERS, "namespace": "crm"}
ORDERS = {**USERS, "name": "orders", "namespace": "crm"}
POLL_S = 0.2


def modes(document: dict[str, Any]) -> dict[str, str]:
    """Each stream of ``connections show --json`` by its label, with its mode."""
    return {
        (f"{s['namespace']}." if s["namespace"] else "")
        + s["name"]: f"{s['sync_mode']}:{s['destination_sync_mode']}"
        for s in document["streams"]
    }


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_syncs_only_the_namespace_named(tmp_path: Path) -> None:
    cli = setup(tmp_path, [PUBLIC, CRM], [{"records": 2, "stream": "users", "namespace": "crm"}])
    cli("connections", "create", "c", "--source", "src", "--destination", "dst", "--streams", "crm.users")
    assert modes(cli.json("connections", "show", "c")) == {"crm.users": "incremental:append"}
    assert "sync succeeded" in cli("connections", "sync", "c").stdout
    given = json.loads((tmp_path / "given.json").read_text())  # what the destination was asked
    assert [(s["stream"]["namespace"], s["stream"]["name"]) for s in given["streams"]] == [("crm", "users")]


def test_cli_refuses_a_plain_name_two_namespaces_share_and_lists_both(tmp_path: Path) -> None:
    cli = setup(tmp_path, [PUBLIC, CRM, ORDERS])
    refused = cli.bad_input("connections", "create", "c", "--source", "src", "--destination", "dst",
                            "--stream", "users:full_refresh:append")  # fmt: skip
    assert refused == (
        "error: stream 'users' is ambiguous: it could be public.users, crm.users; name one with its namespace"
    )
    assert cli.json("connections", "list") == {"connections": []}
    # A plain name that only one namespace has still picks it.
    cli("connections", "create", "c", "--source", "src", "--destination", "dst", "--streams", "orders")
    assert modes(cli.json("connections", "show", "c")) == {"crm.orders": "incremental:append"}


def test_cli_gives_each_namespace_its_own_mode_at_create_and_update(tmp_path: Path) -> None:
    cli = setup(tmp_path, [PUBLIC, CRM])
    cli("connections", "create", "c", "--source", "src", "--destination", "dst",
        "--stream", "public.users:full_refresh:append",
        "--stream", "crm.users:full_refresh:overwrite")  # fmt: skip
    assert modes(cli.json("connections", "show", "c")) == {
        "public.users": "full_refresh:append",
        "crm.users": "full_refresh:overwrite",
    }
    cli("connections", "update", "c", "--stream", "crm.users:incremental:append")
    assert modes(cli.json("connections", "show", "c")) == {
        "public.users": "full_refresh:append",
        "crm.users": "incremental:append",
    }
    shown = cli("connections", "show", "c").stdout
    assert "public.users" in shown and "crm.users" in shown
    refused = cli.bad_input("connections", "update", "c", "--stream", "users:full_refresh:overwrite")
    assert "could be public.users, crm.users" in refused


def test_cli_names_with_dots_quotes_and_separators_are_written_quoted(tmp_path: Path) -> None:
    dotted = {**USERS, "name": "crm.users"}  # no namespace, a name with a dot
    odd = {**USERS, "name": 'a:b,c "q" é'}  # a colon, a comma, quotes and a non-ASCII letter
    cli = setup(tmp_path, [CRM, dotted, odd])
    refused = cli.bad_input("connections", "create", "c", "--source", "src", "--destination", "dst",
                            "--streams", "crm.users")  # fmt: skip
    assert refused == (
        'error: stream \'crm.users\' is ambiguous: it could be "crm"."users", "crm.users"; '
        "name one as written here"
    )
    cli("connections", "create", "c", "--source", "src", "--destination", "dst",
        "--stream", '"crm.users":full_refresh:append', "--stream", '"crm"."users":full_refresh:overwrite',
        "--stream", '"a:b,c ""q"" é":incremental:append')  # fmt: skip
    document = cli.json("connections", "show", "c")
    assert {
        (s["namespace"], s["name"], s["sync_mode"], s["destination_sync_mode"]) for s in document["streams"]
    } == {
        ("crm", "users", "full_refresh", "overwrite"),
        (None, "crm.users", "full_refresh", "append"),
        (None, 'a:b,c "q" é', "incremental", "append"),
    }
    unknown = cli.bad_input("connections", "update", "c", "--stream", "nope:full_refresh:append")
    assert unknown == (
        'error: unknown stream(s) nope: the connection syncs "a:b,c ""q"" é", "crm"."users", "crm.users"'
    )


# -- API -----------------------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[httpx.Client, dict[str, str]]]:
    """A server whose scripted source discovers ``public.users`` and ``crm.users``; its client and
    the ids of that source and a dev-null destination."""
    home = tmp_path / "home"
    home.mkdir()
    config = {"discover_steps": [{"catalog": {"streams": [PUBLIC, CRM]}}]}
    for args in (
        ("sources", "create", "s", "--connector", executable(tmp_path, "scripted_source"),
         "--config", json.dumps(config)),
        ("destinations", "create", "d", "--connector", "builtin:destination-devnull"),
    ):  # fmt: skip
        made = ferryman(home, *args)
        assert made.returncode == 0, made.stderr
    with running_server(home, "--auth", "none") as srv, httpx.Client(base_url=srv.v1, timeout=120) as client:
        ids = {
            "sourceId": client.get("/sources").json()["data"][0]["sourceId"],
            "destinationId": client.get("/destinations").json()["data"][0]["destinationId"],
        }
        yield client, ids


def _create(
    client: httpx.Client, ids: dict[str, str], streams: list[dict[str, Any]], **more: Any
) -> httpx.Response:
    """POST /connections (a new name each time), again while the source's discover still runs."""
    body = {**ids, "name": f"c{time.monotonic_ns()}", "configurations": {"streams": streams}, **more}
    deadline = time.monotonic() + 60
    while True:
        answer = client.post("/connections", json=body)
        if answer.status_code != 409 or "discovered" not in answer.text or time.monotonic() > deadline:
            return answer
        time.sleep(POLL_S)


def _api_modes(connection: dict[str, Any]) -> dict[tuple[str | None, str], str]:
    return {(s.get("namespace"), s["name"]): s["syncMode"] for s in connection["configurations"]["streams"]}


def test_api_honours_the_namespace_of_a_stream_configuration(
    api: tuple[httpx.Client, dict[str, str]],
) -> None:
    client, ids = api
    ambiguous = _create(client, ids, [{"name": "users", "syncMode": "full_refresh_append"}])
    assert ambiguous.status_code == 422, ambiguous.text
    assert "could be public.users, crm.users" in ambiguous.json()["detail"]
    as_null = _create(client, ids, [{"name": "users", "namespace": None}])  # no stream lacks one
    assert as_null.status_code == 422 and as_null.json()["detail"] == ambiguous.json()["detail"]

    only_crm = _create(
        client, ids, [{"name": "users", "namespace": "crm", "syncMode": "full_refresh_append"}]
    )
    assert only_crm.status_code == 200, only_crm.text
    assert _api_modes(only_crm.json()) == {("crm", "users"): "full_refresh_append"}

    two = [
        {"name": "users", "namespace": "public", "syncMode": "full_refresh_append"},
        {"name": "users", "namespace": "crm", "syncMode": "incremental_deduped_history"},
    ]
    # The API's default namespace is the destination's: both would land in one table.
    merged = _create(client, ids, two)
    assert merged.status_code == 422 and "would both be written to 'users'" in merged.json()["detail"]
    both = _create(client, ids, two, namespaceDefinition="source")
    assert both.status_code == 200, both.text
    connection_id = both.json()["connectionId"]
    assert _api_modes(both.json()) == {
        ("public", "users"): "full_refresh_append",
        ("crm", "users"): "incremental_deduped_history",
    }
    patched = client.patch(
        f"/connections/{connection_id}",
        json={
            "configurations": {
                "streams": [{"name": "users", "namespace": "public", "syncMode": "full_refresh_overwrite"}]
            }
        },
    )
    assert patched.status_code == 200, patched.text
    assert _api_modes(patched.json()) == {
        ("public", "users"): "full_refresh_overwrite",
        ("crm", "users"): "incremental_deduped_history",
    }
    unknown = client.patch(
        f"/connections/{connection_id}",
        json={"configurations": {"streams": [{"name": "users", "namespace": "sales"}]}},
    )
    assert unknown.status_code == 422
    assert "unknown stream(s) sales.users" in unknown.json()["detail"]
    listed = client.get("/streams", params={"sourceId": ids["sourceId"]}).json()
    assert [(s["streamnamespace"], s["streamName"]) for s in listed] == [
        ("public", "users"),
        ("crm", "users"),
    ]


# -- web -----------------------------------------------------------------------------------------

ODD = [
    PUBLIC,
    CRM,
    {**USERS, "name": "users"},  # and one without a namespace
    {**USERS, "name": "a.b \"c\" 'd' <é>", "namespace": "x y"},
    {**USERS, "name": "ü s", "namespace": "x.y"},
]
ROW = re.compile(r'<tr>\s*<td>(.*?)</td>.*?<select id="[^"]*" name="([^"]*)">(.*?)</select>', re.S)


def test_web_form_sets_each_streams_mode_whatever_its_name(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    config = {"discover_steps": [{"catalog": {"streams": ODD}}]}
    for args in (
        ("sources", "create", "s", "--connector", executable(tmp_path, "scripted_source"),
         "--config", json.dumps(config)),
        ("destinations", "create", "d", "--connector", "builtin:destination-devnull"),
        ("connections", "create", "c", "--source", "s", "--destination", "d", "--full-refresh"),
    ):  # fmt: skip
        made = ferryman(home, *args)
        assert made.returncode == 0, made.stderr
    wanted = ["full_refresh:append", "incremental:append", "incremental:append_dedup", "full_refresh:append",
              "incremental:append"]  # fmt: skip
    with running_server(home, "--auth", "none") as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        page = client.get("/connections/1").text
        rows = ROW.findall(page)
        fields = [html.unescape(field) for _, field, _ in rows]
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token and len(rows) == len(ODD)
        # What a browser sends: every select of the form, in order, even two of one name.
        form = [("csrf", token.group(1)), *zip(fields, wanted, strict=True)]
        saved = client.post(
            "/connections/1/streams",
            content=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert saved.status_code == 303, saved.text
        (connection,) = client.get("/v1/connections").json()["data"]
    got = {(s.get("namespace"), s["name"]): s["syncMode"] for s in connection["configurations"]["streams"]}
    airbyte = {"full_refresh:append": "full_refresh_append", "incremental:append": "incremental_append",
               "incremental:append_dedup": "incremental_deduped_history"}  # fmt: skip
    assert got == {
        (s.get("namespace"), s["name"]): airbyte[mode] for s, mode in zip(ODD, wanted, strict=True)
    }
    assert len(set(fields)) == len(ODD), fields  # one input per stream
    labels = [html.unescape(re.sub(r"</?bdi>", "", label)) for label, _, _ in rows]
    assert labels == ["public.users", "crm.users", "users", "x y.a.b \"c\" 'd' <é>", "x.y.ü s"]
    assert "Sync mode of crm.users" in page  # what a screen reader says of its select


def test_web_form_saves_a_mode_for_a_connection_of_more_than_a_thousand_streams(tmp_path: Path) -> None:
    """A browser sends one field per stream: the form of a source of 1,200 tables was refused
    with Starlette's "Too many fields" (1,000 at most) and the mode was not saved."""
    home = tmp_path / "home"
    home.mkdir()
    for args in (
        ("sources", "create", "s", "--connector", "builtin:source-bench", "--config", '{"streams": 1200}'),
        ("destinations", "create", "d", "--connector", "builtin:destination-devnull"),
        ("connections", "create", "c", "--source", "s", "--destination", "d"),
    ):
        made = ferryman(home, *args)
        assert made.returncode == 0, made.stderr
    with running_server(home, "--auth", "none") as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        page = client.get("/connections/1").text
        rows = ROW.findall(page)
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token and len(rows) == 1200
        chosen = re.compile(r'<option value="([^"]+)"[^>]*selected')
        form = [("csrf", token.group(1))]
        for label, field, options in rows:
            current = chosen.search(options)
            assert current is not None, label
            name = html.unescape(re.sub(r"</?bdi>", "", label))
            wanted = "full_refresh:overwrite" if name == "stream_1199" else current.group(1)
            form.append((html.unescape(field), wanted))
        saved = client.post(
            "/connections/1/streams",
            content=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert saved.status_code == 303, saved.text
        (connection,) = client.get("/v1/connections").json()["data"]
    modes = {s["name"]: s["syncMode"] for s in connection["configurations"]["streams"]}
    assert modes["stream_1199"] == "full_refresh_overwrite"
    assert len(modes) == 1200 and modes["stream_0"] != "full_refresh_overwrite"
