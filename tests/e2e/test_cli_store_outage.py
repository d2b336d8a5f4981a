"""A foreground sync (`ferryman connections sync`) whose Postgres store goes away while it runs.

The store refuses connections for a while and the destination confirms a state meanwhile: the
command used to exit 2 at its next look at the store, stopping the connectors and leaving the
job to be failed by recovery. Now the sync runs on, the command says once that the store is away
and once that it answers again, and the job ends succeeded with one attempt and its last state
saved. The outage is real: the test's database stops accepting connections.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ferryman.store import open_store
from tests.e2e.test_cli_jobs import Cli, wait_for
from tests.e2e.test_cli_wedged import scripted_connection
from tests.integration.test_engine import _postgres_url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_url()


def test_a_foreground_sync_goes_on_while_its_postgres_store_is_away(
    tmp_path: Path, postgres_url: str
) -> None:
    import psycopg

    cli = Cli(tmp_path / "home", FERRYMAN_DATABASE_URL=postgres_url)
    cli.env["FERRYMAN_DATABASE_URL"] = postgres_url  # Cli drops the caller's by default
    started, go, sent, again = (tmp_path / name for name in ("started", "go", "sent", "again"))
    steps = [
        {"records": 5},
        {"state": {"name": "users"}},
        {"touch": str(started)},
        {"wait_for_file": str(go), "timeout": 300},
        {"records": 5},
        {"state": {"name": "users"}},  # confirmed while the store is away
        {"touch": str(sent)},
        {"wait_for_file": str(again), "timeout": 300},
        {"records": 5},
        {"state": {"name": "users"}},
    ]
    output = tmp_path / "out.jsonl"
    scripted_connection(cli, tmp_path, steps, output)
    database = postgres_url.rsplit("/", 1)[1]
    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    sync = cli.start("connections", "sync", "conn", "--json")
    try:
        wait_for(started.exists, "the source to start")
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
        )
        go.touch()
        wait_for(sent.exists, "the source to send its second state")
        workspace = tmp_path / "home" / "workspace"

        def said() -> bool:
            return any("saving state failed" in path.read_text() for path in workspace.glob("*/0/logs.log"))

        wait_for(said, "a state save to meet the outage")
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        again.touch()
        stdout, stderr = cli.finish(sync)
    finally:
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        admin.close()
        if sync.poll() is None:
            sync.kill()
            cli.finish(sync)
    assert sync.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert stderr.count("goes on, its progress is saved when the store answers") == 1, stderr
    document = json.loads(stdout)
    assert document["job"]["status"] == "succeeded", document
    assert len(document["attempts"]) == 1, document
    assert len(output.read_text().splitlines()) >= 15
    store = open_store(postgres_url)
    (saved,) = store.get_state(store.get_connection("conn").id)
    assert saved["stream"]["stream_state"] == {"cursor": 15}  # the last state, saved after the outage
    assert "k-never-printed" not in stdout + stderr
