"""Requests per second and p50/p99 latency of the HTTP API over a store with many jobs.

    python benchmarks/api.py [--jobs 100000] [--requests 2000] [--pairs 500]
                             [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/DB]

Starts a real ``ferryman server --no-engine --auth none`` on a fresh store (SQLite in a temporary
FERRYMAN_HOME, or the Postgres database given, which must be empty), inserts ``--jobs`` finished
sync jobs of one connection in bulk with SQL, then measures, from one client, one request at a
time (latency is what a client waits; requests per second are those of one client):

  * ``GET /v1/jobs?limit=20`` (the first page, Airbyte's default order),
  * ``GET /v1/jobs?limit=20&orderBy=updatedAt|DESC`` (the newest changes first, as an
    orchestrator's client polls for finished jobs),
  * ``GET /v1/jobs/{id}`` of random jobs,
  * ``POST /v1/jobs`` + ``DELETE /v1/jobs/{id}`` pairs (a sync enqueued, then cancelled).
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

from ferryman.store import open_store
from ferryman.store.schema import jobs

BATCH = 5000


def seed(url: str | None, home: Path, count: int) -> str:
    """A source, a destination, a connection and ``count`` succeeded syncs of it; its UUID."""
    with open_store(url, home=home) as store:
        source = store.create_actor("source", "bench", "builtin:bench", {"count": 10})
        destination = store.create_actor("destination", "null", "builtin:dev-null", {})
        catalog = {"streams": []}
        conn = store.create_connection("c", source.id, destination.id, catalog)
        engine_url = url or f"sqlite:///{home / 'ferryman.db'}"
    engine = sa.create_engine(engine_url)
    start = datetime.now(UTC) - timedelta(days=30)
    with engine.begin() as db:
        for first in range(0, count, BATCH):
            rows = []
            for n in range(first, min(first + BATCH, count)):
                moment = start + timedelta(seconds=n)
                rows.append(
                    {
                        "type": "sync",
                        "scope": str(conn.id),
                        "config": {},
                        "status": "succeeded",
                        "created_at": moment,
                        "updated_at": moment + timedelta(seconds=5),
                        "started_at": moment,
                        "cancel_requested": False,
                    }
                )
            db.execute(jobs.insert(), rows)
    engine.dispose()
    return conn.uuid


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def measure(name: str, count: int, call: Callable[[], None]) -> dict[str, float | str]:
    for _ in range(min(50, count)):  # warm up: imports, caches, connection pool
        call()
    timings = []
    began = time.perf_counter()
    for _ in range(count):
        start = time.perf_counter()
        call()
        timings.append((time.perf_counter() - start) * 1000)
    elapsed = time.perf_counter() - began
    timings.sort()
    return {
        "what": name,
        "requests": count,
        "rps": count / elapsed,
        "p50": statistics.median(timings),
        "p99": timings[int(len(timings) * 0.99) - 1],
    }


def run(url: str | None, count: int, requests: int, pairs: int) -> list[dict[str, float | str]]:
    home = Path(tempfile.mkdtemp(prefix="ferryman-bench-api-"))
    began = time.perf_counter()
    connection = seed(url, home, count)
    print(f"seeded {count:,} jobs in {time.perf_counter() - began:.1f}s", file=sys.stderr)
    port = free_port()
    env = {**os.environ, "FERRYMAN_HOME": str(home)}
    env.pop("FERRYMAN_DATABASE_URL", None)
    if url:
        env["FERRYMAN_DATABASE_URL"] = url
    log = (home / "server.log").open("w")
    options = ["--port", str(port), "--no-engine", "--auth", "none"]
    command = [sys.executable, "-m", "ferryman", "server", *options]
    server = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            _wait_up(client, server)
            ids = [j["jobId"] for j in client.get("/jobs", params={"limit": 100}).json()["data"]]
            low, high = min(ids), min(ids) + count - 1

            def page() -> None:
                client.get("/jobs", params={"limit": 20}).raise_for_status()

            def by_update() -> None:
                params = {"limit": 20, "orderBy": "updatedAt|DESC"}
                client.get("/jobs", params=params).raise_for_status()

            def one() -> None:
                client.get(f"/jobs/{random.randint(low, high)}").raise_for_status()

            def pair() -> None:
                job = client.post("/jobs", json={"connectionId": connection, "jobType": "sync"})
                job.raise_for_status()
                client.delete(f"/jobs/{job.json()['jobId']}").raise_for_status()

            return [
                measure("GET /v1/jobs?limit=20", requests, page),
                measure("GET /v1/jobs?limit=20&orderBy=updatedAt|DESC", requests, by_update),
                measure("GET /v1/jobs/{id}", requests, one),
                measure("POST /v1/jobs + DELETE /v1/jobs/{id}", pairs, pair),
            ]
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def _wait_up(client: httpx.Client, server: subprocess.Popen[bytes]) -> None:
    while True:
        if server.poll() is not None:
            raise SystemExit("the server did not start; see its log")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--database-url", default=None, help="a Postgres database (empty); default SQLite")
    args = parser.parse_args()
    store = "postgres" if args.database_url else "sqlite"
    print("| store | request | n | req/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for row in run(args.database_url, args.jobs, args.requests, args.pairs):
        print(
            f"| {store} | `{row['what']}` | {row['requests']} | {row['rps']:.0f} | "
            f"{row['p50']:.1f} | {row['p99']:.1f} |"
        )


if __name__ == "__main__":
    main()
