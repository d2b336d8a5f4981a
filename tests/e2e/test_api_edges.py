"""Requests at the edges of what the API takes, sent to a real `ferryman server`: each gets a
clear answer (never a 500) and the data it reports is what happened."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.api_server import Server, ferryman, running_server

POLL_S = 0.2


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, httpx.Client, dict[str, Any]]]:
    """A server with one connection and one finished sync of it."""
    home = tmp_path_factory.mktemp("home")
    for args in (
        ("sources", "create", "s", "--connector", "builtin:source-bench", "--config", '{"count": 10}'),
        ("destinations", "create", "d", "--connector", "builtin:destination-devnull"),
        ("connections", "create", "c", "--source", "s", "--destination", "d"),
    ):
        made = ferryman(home, *args)
        assert made.returncode == 0, made.stderr
    with running_server(home, "--auth", "none") as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        (conn,) = client.get("/v1/connections").json()["data"]
        started = client.post("/v1/jobs", json={"connectionId": conn["connectionId"], "jobType": "sync"})
        assert started.status_code == 200, started.text
        job = started.json()
        while job["status"] not in ("succeeded", "failed", "cancelled"):  # the global timeout bounds it
            time.sleep(POLL_S)
            job = client.get(f"/v1/jobs/{job['jobId']}").json()
        assert job["status"] == "succeeded", job
        yield srv, client, job


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/ferryman/jobs"])
def test_date_filters_at_the_ends_of_the_calendar_are_answered_not_a_500(
    served: tuple[Server, httpx.Client, dict[str, Any]], path: str
) -> None:
    # In UTC these fall before year 1 or after year 9999: converting them overflowed, a 500.
    _, client, job = served
    earliest = {"createdAtStart": "0001-01-01T00:00:00+01:00"}
    latest = {"createdAtEnd": "9999-12-31T23:59:59-05:00"}
    for params in (earliest, latest, {**earliest, **latest}):
        answer = client.get(path, params={"jobType": "sync", **params})
        assert answer.status_code == 200, (params, answer.text)
        assert [j["jobId"] for j in answer.json()["data"]] == [job["jobId"]]
    nothing = client.get(path, params={"createdAtStart": "9999-12-31T23:59:59-05:00"})
    assert (nothing.status_code, nothing.json()["data"]) == (200, [])


def test_config_api_jobs_list_counts_a_status_named_twice_once(
    served: tuple[Server, httpx.Client, dict[str, Any]],
) -> None:
    _, client, job = served
    listed = client.post(
        "/api/v1/jobs/list",
        json={"configTypes": ["sync", "sync"], "statuses": ["succeeded", "succeeded", "failed"]},
    )
    assert listed.status_code == 200, listed.text
    assert [j["job"]["id"] for j in listed.json()["jobs"]] == [job["jobId"]]
    assert listed.json()["totalJobCount"] == 1


def test_a_body_over_10_mib_is_refused_before_it_is_read(
    served: tuple[Server, httpx.Client, dict[str, Any]],
) -> None:
    """A 100 MB PATCH was read, parsed (about 1 GB of the server's memory) and stored into the
    source's configuration, then into every job's snapshot. Now: a 413 problem, nothing stored;
    a chunked body (no Content-Length) is stopped once it passes the ceiling."""
    _, client, _ = served
    (source,) = client.get("/v1/sources").json()["data"]
    url = f"/v1/sources/{source['sourceId']}"
    json_type = {"content-type": "application/json"}
    huge = b'{"configuration": {"blob": "' + b"x" * (100 << 20) + b'"}}'

    def chunked() -> Iterator[bytes]:
        yield b'{"configuration": {"blob": "'
        for _ in range(11):
            yield b"x" * (1 << 20)
        yield b'"}}'

    for body in (huge, chunked()):
        refused = client.patch(url, content=body, headers=json_type)
        assert refused.status_code == 413, refused.text[:300]
        assert refused.headers["content-type"] == "application/problem+json"
        assert "at most 10485760 bytes are accepted (FERRYMAN_API_MAX_BODY_MB)" in refused.json()["detail"]
    assert client.get(url).json()["configuration"] == source["configuration"]
    # Under the ceiling a body is read as before (here: a connectionId that is no UUID).
    almost = client.post("/v1/jobs", json={"connectionId": "x" * (9 << 20), "jobType": "sync"})
    assert almost.status_code == 422, almost.text[:300]


def test_a_body_that_is_no_json_object_is_told_what_to_send(
    served: tuple[Server, httpx.Client, dict[str, Any]],
) -> None:
    """A JSON body sent as text/plain or a form, or no body, was a 422 'Input should be a valid
    dictionary or object to extract fields from': it did not say what was wrong with it."""
    _, client, job = served
    body = f'{{"connectionId": "{job["connectionId"]}", "jobType": "sync"}}'
    for content_type, said in (
        ("text/plain", "not text/plain"),
        ("application/x-www-form-urlencoded", "not application/x-www-form-urlencoded"),
        (None, "not none"),
    ):
        headers = {"content-type": content_type} if content_type else {}
        refused = client.post("/v1/jobs", content=body, headers=headers)
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert "must be a JSON object sent as Content-Type: application/json" in detail and said in detail
    for sent in ("", "[1, 2]"):
        refused = client.post("/v1/jobs", content=sent, headers={"content-type": "application/json"})
        assert (refused.status_code, refused.json()["detail"]) == (422, "the body must be a JSON object")


def test_a_body_nested_thousands_deep_is_told_so_in_one_line(
    served: tuple[Server, httpx.Client, dict[str, Any]],
) -> None:
    """It was FastAPI's 400 "There was an error parsing the body": its JSON reader recurses and
    ran out of stack. Brackets inside strings nest nothing, and are taken."""
    _, client, job = served
    (source,) = client.get("/v1/sources").json()["data"]
    state = f"/v1/ferryman/connections/{job['connectionId']}/state"
    deep = "[" * 5000 + "]" * 5000
    for method, path, body in (
        ("PATCH", f"/v1/sources/{source['sourceId']}", f'{{"configuration": {{"x": {deep}}}}}'),
        ("PUT", state, f'{{"state": {deep}}}'),
        ("POST", "/api/v1/connections/get", f'{{"connectionId": {deep}}}'),
    ):
        refused = client.request(method, path, content=body, headers={"content-type": "application/json"})
        assert refused.status_code == 422, (path, refused.text[:300])
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["detail"] == (
            "the request body nests more than 400 levels deep; no configuration, state or catalog "
            "nests more than 200"
        )
    assert client.get(f"/v1/sources/{source['sourceId']}").json()["configuration"] == source["configuration"]
    brackets = [{"type": "LEGACY", "data": {"note": "[{" * 5000}}]
    taken = client.put(state, json={"state": brackets})
    assert (taken.status_code, taken.json()["state"]) == (200, brackets)
    assert client.delete(state).status_code == 204


def test_a_path_with_escape_sequences_is_logged_visibly_not_obeyed(
    served: tuple[Server, httpx.Client, dict[str, Any]],
) -> None:
    """The access log printed the decoded path: `GET /%1b]0;x%07` set the title of the terminal
    reading the server's log, `%1b[2J` cleared it."""
    srv, client, _ = served
    answer = client.get("/v1/%1b]0;owned%07%1b[2J%e2%80%aeabc")
    assert answer.status_code == 404
    logged = (srv.home / "server.log").read_text(errors="replace")
    assert "\x1b" not in logged and "\u202e" not in logged
    assert "GET /v1/\\x1b]0;owned\\x07\\x1b[2J\\u202eabc 404" in logged, logged[-2000:]
