"""``GET /metrics`` of a real ``ferryman server`` counts what other processes did: jobs run by a
separate ``ferryman worker`` and by CLI commands, on the same SQLite file or Postgres database.
The exposition is parsed with prometheus_client's parser and its values asserted."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ferryman import __version__
from ferryman.api.metrics import StoreCollector
from ferryman.jobs.states import JobType
from ferryman.store import SqlJobStore, open_store
from ferryman.store.schema import jobs
from tests.contract.store_support import store_url
from tests.e2e.api_server import FERRYMAN, running_server
from tests.integration.test_engine import _postgres_url

__all__ = ["store_url"]  # the fixture: one fresh SQLite file or Postgres database per test

SECRET = "s3cr3t-do-not-show"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LABELS = {"type", "status", "slot", "version", "le"}  # all the labels a ferryman_ family may have
Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def env_for(home: Path, url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "FERRYMAN_HOME": str(home), "FERRYMAN_DATABASE_URL": url, **extra}


def cli(home: Path, url: str, *args: str) -> str:
    done = subprocess.run(
        [*FERRYMAN, *args], env=env_for(home, url), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextmanager
def worker(home: Path, url: str) -> Iterator[subprocess.Popen[str]]:
    """A ``ferryman worker`` process on the store, stopped (SIGTERM) at the end."""
    process = subprocess.Popen(
        [*FERRYMAN, "worker"],
        env=env_for(home, url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err


def wait_until_ended(store: SqlJobStore, job_ids: list[int], process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while not all(store.get_job(job_id).status.terminal for job_id in job_ids):
        assert process.poll() is None, "the worker died"
        assert time.monotonic() < deadline, [store.get_job(job_id).status for job_id in job_ids]
        time.sleep(0.1)


def test_a_scrape_counts_the_jobs_other_processes_ran(store_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    with (
        running_server(home, "--no-engine", database_url=store_url) as server,
        open_store(store_url) as store,
    ):
        # A connection made by the CLI (its discover job runs in the CLI process), its sync queued.
        cli(
            home,
            store_url,
            "sources",
            "create",
            "bench",
            "--connector",
            "builtin:source-bench",
            "--config",
            '{"count": 250}',
        )
        cli(home, store_url, "destinations", "create", "null", "--connector", "builtin:destination-devnull")
        cli(home, store_url, "connections", "create", "c", "--source", "bench", "--destination", "null")
        sync_id = int(
            json.loads(cli(home, store_url, "connections", "sync", "c", "--detach", "--json"))["job"]["id"]
        )
        # Jobs queued through a second connection to the store: two specs and a check that fails.
        specs = [
            store.enqueue(JobType.SPEC, f"bench-{n}", {"connector": "builtin:source-bench"}) for n in range(2)
        ]
        check = store.enqueue(
            JobType.CHECK_SOURCE, "source:99", {"connector": "exec:/bin/false", "config": {"api_key": SECRET}}
        )
        with worker(home, store_url) as process:
            wait_until_ended(store, [sync_id, check.id, *(job.id for job in specs)], process)
        # One more discover, queued an hour ago and still waiting: no worker runs any more.
        pending = store.enqueue(JobType.DISCOVER, "source:1", {"connector": "builtin:source-bench"})
        queued_at = datetime.now(UTC) - timedelta(hours=1)
        with store.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == pending.id).values(created_at=queued_at))

        before = datetime.now(UTC)
        response = httpx.get(f"{server.url}/metrics", timeout=30)
        after = datetime.now(UTC)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse(response.text)

    def value(name: str, **labels: str) -> float:
        return samples[name][tuple(sorted(labels.items()))]

    assert value("ferryman_store_up") == 1
    assert value("ferryman_jobs_ended_total", type="spec", status="succeeded") == 2
    assert value("ferryman_jobs_ended_total", type="check_connection_source", status="failed") == 1
    assert value("ferryman_jobs_ended_total", type="sync", status="succeeded") == 1
    assert value("ferryman_jobs_ended_total", type="discover_schema", status="succeeded") == 1
    assert value("ferryman_jobs_created_total", type="discover_schema") == 2
    assert value("ferryman_jobs", type="discover_schema", status="pending") == 1
    assert value("ferryman_attempt_duration_seconds_count", type="spec", status="succeeded") == 2
    assert (
        value("ferryman_attempt_duration_seconds_count", type="check_connection_source", status="failed") == 1
    )
    assert value("ferryman_records_committed_total", type="sync") == 250
    assert value("ferryman_bytes_committed_total", type="sync") > 250
    assert all(count == 0 for count in samples["ferryman_running_jobs"].values())
    assert "ferryman_running_jobs_limit" not in samples  # --no-engine: no slots of its own
    assert value("ferryman_pending_jobs", type="discover_schema") == 1
    age = value("ferryman_oldest_pending_job_age_seconds", type="discover_schema")
    assert (before - queued_at).total_seconds() <= age <= (after - queued_at).total_seconds()
    assert value("ferryman_build_info", version=__version__) == 1
    # Only types, statuses and slots label the figures: no name, config value or id.
    assert SECRET not in response.text and "bench" not in response.text
    ours = [labels for name, series in samples.items() if name.startswith("ferryman_") for labels in series]
    assert {key for labels in ours for key, _ in labels} <= LABELS


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def test_metrics_need_the_api_auth_unless_open_to_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'ferryman.db'}"
    app = json.loads(cli(home, url, "applications", "create", "prometheus", "--json"))
    with running_server(home, database_url=url) as server:  # an application exists: auth required
        assert httpx.get(f"{server.url}/metrics", timeout=30).status_code == 401
        allowed = httpx.get(
            f"{server.url}/metrics", headers=basic(app["client_id"], app["client_secret"]), timeout=30
        )
        assert allowed.status_code == 200
        assert "ferryman_store_up 1.0" in allowed.text
        assert app["client_secret"] not in allowed.text
    monkeypatch.setenv("MAX_SYNC_WORKERS", "7")  # the server's engine: its limit is what /metrics shows
    with running_server(home, "--metrics-auth", "loopback", database_url=url) as server:
        opened = httpx.get(f"{server.url}/metrics", timeout=30)
        assert httpx.get(f"{server.v1}/jobs", timeout=30).status_code == 401  # the API is not opened
    assert opened.status_code == 200
    limits = parse(opened.text)["ferryman_running_jobs_limit"]
    assert limits == {
        (("slot", "sync"),): 7,
        (("slot", "spec"),): 5,
        (("slot", "check"),): 5,
        (("slot", "discover"),): 5,
    }


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_url()


def test_a_scrape_while_the_store_is_gone_says_so_and_no_more(postgres_url: str) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    registry = CollectorRegistry(auto_describe=False)
    with open_store(postgres_url) as store, psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        registry.register(StoreCollector(store, {"sync": 5}))
        assert parse(generate_latest(registry).decode())["ferryman_store_up"] == {(): 1}
        admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
            )
            gone = parse(generate_latest(registry).decode())
        finally:
            admin.execute(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        back = parse(generate_latest(registry).decode())
    assert gone["ferryman_store_up"] == {(): 0}
    assert not any(name.startswith(("ferryman_jobs", "ferryman_running")) for name in gone)  # not wrong zeros
    assert back["ferryman_store_up"] == {(): 1}
    assert back["ferryman_running_jobs_limit"][(("slot", "sync"),)] == 5
