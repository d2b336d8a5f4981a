"""The server when its database goes away: 503 problems while it is gone, no death, and service
again once it is back (the engine in the same process backs off the same way)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.api_server import running_server
from tests.integration.test_engine import _postgres_url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_url()


def test_a_server_whose_database_goes_away_answers_503_and_lives_on(
    tmp_path: Path, postgres_url: str
) -> None:
    import psycopg

    database = postgres_url.rsplit("/", 1)[1]
    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    try:
        with running_server(tmp_path, database_url=postgres_url) as server:
            assert httpx.get(f"{server.v1}/jobs").status_code == 200

            admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
            )
            gone = httpx.get(f"{server.v1}/jobs")
            assert gone.status_code == 503, gone.text
            assert gone.headers["content-type"].startswith("application/problem+json")
            assert gone.headers["retry-after"]
            assert "password" not in gone.text and "127.0.0.1" not in gone.text  # the reason stays in the log
            page = httpx.get(f"{server.url}/")  # the web UI: a page a person can read, same status
            assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
            assert "try again shortly" in page.text and page.headers["retry-after"]
            assert server.process.poll() is None

            admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
            assert httpx.get(f"{server.v1}/jobs").status_code == 200
        log = (tmp_path / "server.log").read_text()
        assert "Traceback" not in log
    finally:
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        admin.close()
