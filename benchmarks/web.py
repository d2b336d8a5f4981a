"""How fast the web UI's pages load over a store with many jobs (issue #13: under a second).

    python benchmarks/web.py [--jobs 10000] [--requests 50] [--no-browser]

Starts a real ``ferryman server --no-engine --auth none`` on a fresh SQLite store, inserts
``--jobs`` finished sync jobs of one connection in bulk with SQL, each with one attempt and the
stats of one stream (what the job history reads), then measures, one request at a time:

  * over HTTP: the connections list, the connection's page (first page of its job history, and
    the last page: the oldest jobs), the jobs list and one job's page (full HTML, p50/p99/max);
  * in Debian's Chromium driven by Playwright (unless ``--no-browser`` or no /usr/bin/chromium):
    the time from navigation to the ``load`` event of the same pages (CSS and JS included).
"""

from __future__ import annotations

import argparse
import os
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
from ferryman.store.schema import attempts, jobs, stream_stats

BATCH = 2000
CHROMIUM = Path("/usr/bin/chromium")
STREAM = {
    "name": "stream_0",
    "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
    "supported_sync_modes": ["full_refresh", "incremental"],
    "source_defined_cursor": True,
    "default_cursor_field": ["id"],
    "source_defined_primary_key": [["id"]],
}


def seed(home: Path, count: int) -> int:
    """A source, a destination, a connection and ``count`` succeeded syncs of it; its id."""
    with open_store(None, home=home) as store:
        source = store.create_actor("source", "bench", "builtin:source-bench", {"count": 10})
        destination = store.create_actor("destination", "null", "builtin:destination-devnull", {})
        catalog = {
            "streams": [
                {"stream": STREAM, "sync_mode": "incremental", "destination_sync_mode": "append_dedup",
                 "cursor_field": ["id"], "primary_key": [["id"]]}
            ]
        }  # fmt: skip
        conn = store.create_connection("c", source.id, destination.id, catalog)
    engine = sa.create_engine(f"sqlite:///{home / 'ferryman.db'}")
    start = datetime.now(UTC) - timedelta(days=30)
    with engine.begin() as db:
        for first in range(0, count, BATCH):
            numbers = range(first, min(first + BATCH, count))
            moments = [start + timedelta(minutes=n) for n in numbers]
            rows = [
                {"type": "sync", "scope": str(conn.id), "config": {}, "status": "succeeded",
                 "created_at": m, "updated_at": m + timedelta(seconds=42), "started_at": m,
                 "cancel_requested": False}
                for m in moments
            ]  # fmt: skip
            ids = [row.id for row in db.execute(jobs.insert().returning(jobs.c.id), rows)]
            tries = [
                {"job_id": i, "number": 0, "status": "succeeded", "log_path": str(home / f"{i}.log"),
                 "created_at": m, "updated_at": m, "ended_at": m + timedelta(seconds=42), "pids": []}
                for i, m in zip(ids, moments, strict=True)
            ]  # fmt: skip
            tried = [row.id for row in db.execute(attempts.insert().returning(attempts.c.id), tries)]
            stats = [
                {"attempt_id": a, "name": "stream_0", "namespace": "", "records_emitted": 1000,
                 "bytes_emitted": 450_000, "records_committed": 1000, "bytes_committed": 450_000}
                for a in tried
            ]  # fmt: skip
            db.execute(stream_stats.insert(), stats)
    engine.dispose()
    return conn.id


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def measure(name: str, count: int, call: Callable[[], None]) -> dict[str, float | str]:
    for _ in range(min(5, count)):  # warm up: imports, template compilation, the connection pool
        call()
    timings = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    return {
        "what": name,
        "n": count,
        "p50": statistics.median(timings),
        "p99": timings[max(0, int(len(timings) * 0.99) - 1)],
        "max": timings[-1],
    }


def pages(conn_id: int, count: int, a_job: int) -> list[tuple[str, str]]:
    last = (count - 1) // 20 * 20
    return [
        ("connections list", "/"),
        ("connection page, newest jobs", f"/connections/{conn_id}"),
        ("connection page, oldest jobs", f"/connections/{conn_id}?offset={last}"),
        ("jobs list", "/jobs"),
        ("job page", f"/jobs/{a_job}"),
    ]


def over_http(base: str, targets: list[tuple[str, str]], requests: int) -> list[dict[str, float | str]]:
    results = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for name, path in targets:

            def get(path: str = path) -> None:
                answer = client.get(path)
                answer.raise_for_status()
                assert "<html" in answer.text

            results.append(measure(f"HTTP {name}", requests, get))
    return results


def in_browser(base: str, targets: list[tuple[str, str]], requests: int) -> list[dict[str, float | str]]:
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        for name, path in targets:

            def load(path: str = path) -> None:
                page.goto(base + path, wait_until="load")

            results.append(measure(f"Chromium {name}", requests, load))
        chromium.close()
    return results


def run(count: int, requests: int, browser: bool) -> list[dict[str, float | str]]:
    home = Path(tempfile.mkdtemp(prefix="ferryman-bench-web-"))
    began = time.perf_counter()
    conn_id = seed(home, count)
    print(
        f"seeded {count:,} jobs (with attempts and stats) in {time.perf_counter() - began:.1f}s",
        file=sys.stderr,
    )
    port = free_port()
    env = {**os.environ, "FERRYMAN_HOME": str(home)}
    env.pop("FERRYMAN_DATABASE_URL", None)
    log = (home / "server.log").open("w")
    command = [
        sys.executable,
        "-m",
        "ferryman",
        "server",
        "--port",
        str(port),
        "--no-engine",
        "--auth",
        "none",
    ]
    server = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(base, server)
        targets = pages(conn_id, count, a_job=count // 2)
        results = over_http(base, targets, requests)
        if browser and CHROMIUM.exists():
            results += in_browser(base, targets, max(10, requests // 5))
        return results
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()


def _wait_up(base: str, server: subprocess.Popen[bytes]) -> None:
    while True:
        if server.poll() is not None:
            raise SystemExit("the server did not start; see its log")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--no-browser", action="store_true", help="measure over HTTP only")
    args = parser.parse_args()
    print(f"| page ({args.jobs:,} jobs) | n | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for row in run(args.jobs, args.requests, not args.no_browser):
        print(f"| {row['what']} | {row['n']} | {row['p50']:.1f} | {row['p99']:.1f} | {row['max']:.1f} |")


if __name__ == "__main__":
    main()
