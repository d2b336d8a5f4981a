"""How long a ``/metrics`` scrape takes with many jobs in the store.

    python benchmarks/metrics.py [--jobs 100000] [--runs 7]
                                 [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/DB]

Fills a fresh store (SQLite in a temporary directory, or the Postgres database given, which must
be empty) with ``--jobs`` jobs as a busy installation has them: 70% syncs (three streams of stats
each, 1 in 10 with a failed attempt before the one that succeeded), the rest checks, discovers and
specs, a few hundred pending and running; every job's config a ~2 KB snapshot as the service
writes it, every sync with the ``scheduled_for`` a scheduler sets. Postgres is then vacuumed and
analysed, as autovacuum keeps it; SQLite is not analysed, as ferryman never does. A store with
migration 0011 first folds the ended attempts (what the first scrapes after the upgrade do, timed
once). Then it times, median of ``--runs``:

  * ``store.tallies()``, every query of a scrape (CPU: this process's, which is all of it on
    SQLite and only the client's share on Postgres),
  * the whole scrape: ``GET /metrics`` over HTTP on a ``ferryman server --no-engine`` on the store
    (CPU: the server process's; on Postgres the database's own work is not in it).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import sqlalchemy as sa

from ferryman.store import SqlJobStore, open_store
from ferryman.store.schema import attempts, jobs, stream_stats

TYPES = [("sync", 70), ("check_connection_source", 10), ("check_connection_destination", 8)]
TYPES += [("discover_schema", 8), ("spec", 4)]
BATCH = 5000
START = datetime(2026, 1, 1, tzinfo=UTC)


def config_snapshot(rng: random.Random) -> dict[str, Any]:
    streams = [
        {"name": f"stream_{n}", "sync_mode": "incremental", "cursor": ["updated_at"]} for n in range(12)
    ]
    return {
        "version": 1,
        "connector": "pypi:airbyte-source-faker==7.2.1",
        "config": {"seed": rng.random()},
        "streams": streams,
    }


def fill(store: SqlJobStore, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    kinds = [kind for kind, weight in TYPES for _ in range(weight)]
    job_rows: list[dict[str, Any]] = []
    attempt_rows: list[dict[str, Any]] = []
    stat_rows: list[dict[str, Any]] = []
    attempt_id = 0
    engine = store.engine
    for job_id in range(1, count + 1):
        kind = rng.choice(kinds)
        created = START + timedelta(seconds=job_id * 30)
        tail = count - job_id
        status = (
            "pending"
            if tail < 200
            else "running"
            if tail < 220
            else rng.choice(["succeeded"] * 9 + ["failed"])
        )
        job_rows.append(
            {
                "id": job_id,
                "type": kind,
                "scope": str(job_id) if kind == "sync" else f"source:{job_id % 50}",
                "config": config_snapshot(rng),
                "status": status,
                "created_at": created,
                "updated_at": created,
                "started_at": None if status == "pending" else created,
                "next_attempt_at": None,
                "cancel_requested": False,
                "scheduled_for": created if kind == "sync" else None,  # a scheduler made every sync
            }
        )
        if status != "pending":
            retried = kind == "sync" and rng.random() < 0.1
            outcomes = (["failed"] if retried else []) + [status if status != "failed" else "failed"]
            for number, outcome in enumerate(outcomes):
                attempt_id += 1
                began = created + timedelta(seconds=number * 600)
                ended = None if outcome == "running" else began + timedelta(seconds=rng.expovariate(1 / 120))
                attempt_rows.append(
                    {
                        "id": attempt_id,
                        "job_id": job_id,
                        "number": number,
                        "status": outcome,
                        "output": None,
                        "failure_summary": None,
                        "log_path": f"/workspace/{job_id}/{number}/logs.log",
                        "created_at": began,
                        "updated_at": ended or began,
                        "ended_at": ended,
                        "engine_id": "bench",
                        "heartbeat_at": began,
                        "pids": [],
                    }
                )
                if kind == "sync":
                    for stream in range(3):
                        records = rng.randrange(0, 100_000)
                        stat_rows.append(
                            {
                                "attempt_id": attempt_id,
                                "name": f"stream_{stream}",
                                "namespace": "",
                                "records_emitted": records,
                                "bytes_emitted": records * 450,
                                "records_committed": records,
                                "bytes_committed": records * 450,
                            }
                        )
        if len(job_rows) >= BATCH or job_id == count:
            with engine.begin() as conn:
                conn.execute(jobs.insert(), job_rows)
                if attempt_rows:
                    conn.execute(attempts.insert(), attempt_rows)
                if stat_rows:
                    conn.execute(stream_stats.insert(), stat_rows)
            job_rows, attempt_rows, stat_rows = [], [], []
    if store.dialect == "postgresql":
        with engine.begin() as conn:
            for table in ("jobs", "attempts"):
                conn.exec_driver_sql(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
        vacuum(store)


def vacuum(store: SqlJobStore) -> None:
    """The state autovacuum keeps a Postgres table in: statistics, and a visibility map that lets
    index-only scans skip the table (right after a bulk insert, none is set)."""
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")


def median_ms(
    action: Callable[[], object], runs: int, cpu: Callable[[], float] = time.process_time
) -> Timing:
    """Median wall and CPU milliseconds of ``action`` (``cpu``: the CPU seconds of whoever does
    the work so far; CPU time is what a loaded, shared host changes least)."""
    action()  # warm: the first run pays for plans, the page cache and imports
    walls, cpus = [], []
    for _ in range(runs):
        cpu_start, start = cpu(), time.perf_counter()
        action()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu() - cpu_start)
    return Timing(statistics.median(walls) * 1000, statistics.median(cpus) * 1000)


@dataclass(frozen=True)
class Timing:
    wall_ms: float
    cpu_ms: float

    def __str__(self) -> str:
        return f"{self.wall_ms:8.1f} ms wall {self.cpu_ms:8.1f} ms CPU"


def measure(store: SqlJobStore, url: str, runs: int) -> None:
    fold = getattr(store, "fold_tallies", None)  # stores before migration 0011 fold nothing
    if fold is not None:
        start, folded = time.perf_counter(), 0
        while batch := fold():
            folded += batch
        took = time.perf_counter() - start
        print(f"  folded {folded:,} ended attempts in {took:.1f} s (once, after the upgrade)")
        if store.dialect == "postgresql":
            vacuum(store)  # as autovacuum would after the fold's updates
    print(f"  {'store.tallies()':<22} {median_ms(store.tallies, runs)}  (CPU: this process)")
    total, size = scrape_server(url, runs)
    print(f"  {'GET /metrics':<22} {total}  ({size:,} bytes; CPU: the server process)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_server(url: str, runs: int) -> tuple[Timing, int]:
    """Median time of GET /metrics over HTTP on a ``ferryman server --no-engine`` on the store."""
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "FERRYMAN_HOME": home, "FERRYMAN_DATABASE_URL": url}
        argv = [sys.executable, "-m", "ferryman", "server", "--no-engine", "--port", str(port)]
        server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and server.poll() is None, "server did not start"
                    time.sleep(0.1)
            with httpx.Client(base_url=base, timeout=60) as client:

                def scrape() -> int:
                    response = client.get("/metrics")
                    response.raise_for_status()
                    return len(response.content)

                size = scrape()
                process = psutil.Process(server.pid)

                def server_cpu() -> float:
                    times = process.cpu_times()
                    return float(times.user + times.system)

                return median_ms(scrape, runs, server_cpu), size
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'ferryman.db'}"
        with open_store(url) as store:
            with store.engine.connect() as conn:
                assert conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar() == 0, "not empty"
            start = time.perf_counter()
            fill(store, args.jobs)
            with store.engine.connect() as conn:
                counts = [
                    conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
                    for t in (jobs, attempts, stream_stats)
                ]
            print(
                f"{store.dialect}: {counts[0]:,} jobs, {counts[1]:,} attempts, {counts[2]:,} stream stats "
                f"(filled in {time.perf_counter() - start:.0f} s); median of {args.runs}"
            )
            measure(store, url, args.runs)


if __name__ == "__main__":
    main()
