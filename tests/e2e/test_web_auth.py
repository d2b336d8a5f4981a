"""The web UI's login, session cookie and CSRF checks, over HTTP against a real ``ferryman server``."""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.api_server import Server, ferryman, running_server


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    home = tmp_path / "home"
    home.mkdir()
    created = ferryman(home, "applications", "create", "web", "--json")
    assert created.returncode == 0, created.stderr
    with running_server(home) as server:
        yield server, json.loads(created.stdout)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _log_in(client: httpx.Client, app: dict[str, str]) -> httpx.Response:
    token = _csrf(client.get("/login").text)
    form = {
        "csrf": token,
        "client_id": app["client_id"],
        "client_secret": app["client_secret"],
        "next": "/jobs",
    }
    return client.post("/login", data=form)


def test_pages_need_a_login_whose_cookie_is_httponly_lax_and_renewed(
    served: tuple[Server, dict[str, str]],
) -> None:
    server, app = served
    with httpx.Client(base_url=server.url, timeout=30) as client:
        first = client.get("/connections/1")
        assert first.status_code == 303 and first.headers["location"] == "/login?next=/connections/1"
        login_page = client.get("/login")
        cookie = login_page.headers["set-cookie"]
        assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "secure" not in cookie.lower()
        before = client.cookies["ferryman_session"]
        token = _csrf(login_page.text)
        wrong = client.post(
            "/login", data={"csrf": token, "client_id": app["client_id"], "client_secret": "no"}
        )
        assert wrong.status_code == 401 and "wrong secret" in wrong.text
        assert app["client_secret"] not in wrong.text
        logged = _log_in(client, app)
        assert logged.status_code == 303 and logged.headers["location"] == "/jobs"
        assert client.cookies["ferryman_session"] != before  # a new session id at login
        assert client.get("/").status_code == 200
    # The key that signs sessions is the owner's alone.
    key = server.home / "web-session.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_every_post_needs_the_sessions_csrf_token_and_this_origin(
    served: tuple[Server, dict[str, str]],
) -> None:
    server, app = served
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        httpx.Client(base_url=server.url, timeout=30) as other,
    ):
        _log_in(client, app)
        _log_in(other, app)
        token = _csrf(client.get("/").text)
        form = {"name": "x", "source": "1", "destination": "1"}
        assert client.post("/connections/new", data=form).status_code == 403
        assert (
            client.post("/connections/new", data={**form, "csrf": _csrf(other.get("/").text)}).status_code
            == 403
        )
        evil = {"origin": "https://evil.example"}
        assert client.post("/connections/new", data={**form, "csrf": token}, headers=evil).status_code == 403
        # With its own token, the form is taken (and refused for what it says: no such source).
        taken = client.post("/connections/new", data={**form, "csrf": token})
        assert taken.status_code == 422 and "no source" in taken.text.lower()
        assert client.post("/logout", data={"csrf": token}).status_code == 303
        assert client.get("/").status_code == 303  # logged out


def test_a_forged_cookie_or_a_deleted_application_ends_the_session(
    served: tuple[Server, dict[str, str]],
) -> None:
    server, app = served
    with httpx.Client(base_url=server.url, timeout=30) as client:
        _log_in(client, app)
        good = client.cookies["ferryman_session"]
        payload, _, signature = good.partition(".")
        forged = f"{payload[:-2]}xx.{signature}"
        client.cookies.set("ferryman_session", forged)
        assert client.get("/").status_code == 303
        client.cookies.set("ferryman_session", good)
        assert client.get("/").status_code == 200
        deleted = ferryman(server.home, "applications", "delete", "web")
        assert deleted.returncode == 0, deleted.stderr
        assert client.get("/").status_code == 303


def test_logging_out_ends_the_session_for_a_copy_of_its_cookie_too(
    served: tuple[Server, dict[str, str]],
) -> None:
    server, app = served
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        httpx.Client(base_url=server.url, timeout=30) as copy,
        httpx.Client(base_url=server.url, timeout=30) as other,
    ):
        _log_in(client, app)
        _log_in(other, app)
        copy.cookies.set("ferryman_session", client.cookies["ferryman_session"])
        assert copy.get("/").status_code == 200
        assert client.post("/logout", data={"csrf": _csrf(client.get("/").text)}).status_code == 303
        replayed = copy.get("/")
        assert replayed.status_code == 303 and replayed.headers["location"] == "/login?next=/"
        assert other.get("/").status_code == 200  # another session of the same application lives on
    ended = server.home / "web-sessions-ended"
    assert stat.S_IMODE(ended.stat().st_mode) == 0o600


def test_a_bad_web_address_or_form_gets_a_page_and_the_api_still_gets_problem_json(
    served: tuple[Server, dict[str, str]],
) -> None:
    """A person who mistypes an address sees a page saying what is wrong, not a JSON body."""
    server, app = served
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert _log_in(client, app).status_code == 303
        for path, status, words in [
            ("/connections/abc", 422, "valid integer"),
            ("/jobs/1x", 422, "valid integer"),
            ("/no-such-page", 404, "Not Found"),
            ("/connections/999999", 404, "Not found"),
        ]:
            page = client.get(path)
            assert page.status_code == status, path
            assert page.headers["content-type"].startswith("text/html"), path
            assert words in page.text and "<h1>" in page.text, path
        token = _csrf(client.get("/connections/new").text)
        posted = client.post("/connections/new", data={"csrf": token, "source": "abc", "destination": "1"})
        assert posted.status_code == 422 and "choose a source from the list" in posted.text
        assert "invalid literal" not in posted.text
        for path in ("/v1/no-such-route", "/v1/connections/abc", "/api/v1/nothing"):
            answer = client.get(path)
            assert answer.headers["content-type"] == "application/problem+json", path
