"""The scheduler over 10,000 scheduled connections: the time of one pass and the lag of due runs.

    python benchmarks/scheduler.py [--connections 10000] [--backends sqlite postgres]
                                   [--pg-admin postgresql://postgres@127.0.0.1:5432/test]
                                   [--interval-s 1] [--spread-s 30]

For each backend: a fresh store (SQLite in a temporary directory; Postgres: a new database made
through ``--pg-admin`` and dropped after) holding one source, one destination and N connections,
half basic (every 1-24 h), half cron (Quartz and 5-field, in four time zones). Measured, on the
wall clock:

  * idle pass: ``tick()`` when nothing is due: the due query over N connections (median of 5);
  * burst: ``tick()`` when all N are due at once: the pass's seconds, jobs per second, and the
    lag of each run = its job's ``created_at`` - its ``scheduled_for`` (p50, p99, max);
  * steady: N due times spread evenly over ``--spread-s`` seconds, the scheduler's own loop
    (``Scheduler.run``, a pass every ``--interval-s``): lag p50, p99, max.

Jobs are only created (no engine runs them), as a scheduler process does; the job service
builds each job's config snapshot as ``connections sync --detach`` does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from ferryman.jobs.schedules import parse_schedule
from ferryman.scheduler import Scheduler
from ferryman.service import JobService
from ferryman.settings import SchedulerSettings, Settings
from ferryman.store import SqlJobStore, open_store
from ferryman.store.schema import connections, jobs

SCHEDULES = [
    ("every 1h", None),
    ("every 6h", None),
    ("every 24h", None),
    ("every 30m", None),
    ("cron 0 0 12 * * ?", "UTC"),
    ("cron 0 15 */2 ? * MON-FRI", "Europe/Berlin"),
    ("cron 30 3 * * *", "America/New_York"),
    ("cron 0 0 6 ? * 2#1", "Asia/Tokyo"),
]


def populate(store: SqlJobStore, count: int) -> None:
    source = store.create_actor("source", "bench", "builtin:source-bench", {"count": 1})
    destination = store.create_actor("destination", "null", "builtin:destination-devnull", {})
    now = datetime.now(UTC)
    rows = []
    for n in range(count):
        text, zone = SCHEDULES[n % len(SCHEDULES)]
        schedule = parse_schedule(text, zone)
        rows.append(
            {
                "name": f"conn-{n:05d}",
                "source_id": source.id,
                "destination_id": destination.id,
                "catalog": {"streams": []},
                "namespace_definition": "source",
                "namespace_format": None,
                "prefix": "",
                "status": "active",
                "schedule": schedule.to_document(),
                "created_at": now,
                "uuid": str(uuid.uuid4()),
                "next_run_at": schedule.next_run(now),
            }
        )
    with store.engine.begin() as conn:
        conn.execute(connections.insert(), rows)


def set_due(store: SqlJobStore, due: list[datetime]) -> None:
    with store.engine.begin() as conn:
        conn.execute(jobs.delete())
        ids = conn.execute(sa.select(connections.c.id).order_by(connections.c.id)).scalars().all()
        conn.execute(
            connections.update().where(connections.c.id == sa.bindparam("cid")),
            [{"cid": cid, "next_run_at": moment} for cid, moment in zip(ids, due, strict=True)],
        )


def lags(store: SqlJobStore) -> list[float]:
    with store.engine.connect() as conn:
        found = conn.execute(sa.select(jobs.c.created_at, jobs.c.scheduled_for)).all()
    return sorted((created - due).total_seconds() for created, due in found)


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(share * len(values)))] if values else float("nan")


def lag_line(values: list[float]) -> str:
    return (
        f"lag p50 {percentile(values, 0.5):.2f}s, p99 {percentile(values, 0.99):.2f}s, "
        f"max {values[-1]:.2f}s ({len(values)} runs)"
    )


def measure(url: str, count: int, interval_s: float, spread_s: float) -> dict[str, Any]:
    store = open_store(url)
    try:
        started = time.perf_counter()
        populate(store, count)
        print(f"  {count} connections stored in {time.perf_counter() - started:.1f}s")
        settings = SchedulerSettings(interval_s=interval_s)
        scheduler = Scheduler(JobService(store, Settings()), settings)

        set_due(store, [datetime.now(UTC) + timedelta(days=1)] * count)
        idle = []
        for _ in range(5):
            started = time.perf_counter()
            assert scheduler.tick().created == []
            idle.append(time.perf_counter() - started)
        print(f"  idle pass (nothing due): median {statistics.median(idle) * 1000:.1f} ms")

        set_due(store, [datetime.now(UTC)] * count)
        started = time.perf_counter()
        made = len(scheduler.tick().created)
        burst_s = time.perf_counter() - started
        assert made == count, made
        burst = lags(store)
        rate = count / burst_s
        print(f"  burst pass ({count} due at once): {burst_s:.1f}s, {rate:.0f} jobs/s; {lag_line(burst)}")

        start = datetime.now(UTC) + timedelta(seconds=2)
        set_due(store, [start + timedelta(seconds=spread_s * n / count) for n in range(count)])
        stop = threading.Event()
        loop = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
        loop.start()
        deadline = time.monotonic() + spread_s + 600
        while time.monotonic() < deadline:
            with store.engine.connect() as conn:
                if conn.execute(sa.select(sa.func.count()).select_from(jobs)).scalar_one() >= count:
                    break
            time.sleep(0.5)
        stop.set()
        loop.join()
        steady = lags(store)
        print(f"  steady ({count} due over {spread_s:g}s, a pass every {interval_s:g}s): {lag_line(steady)}")
        return {
            "idle_ms": statistics.median(idle) * 1000,
            "burst_s": burst_s,
            "burst": burst,
            "steady": steady,
        }
    finally:
        store.close()


def postgres_url(admin: str) -> tuple[str, str]:
    name = f"ferryman_schedbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}", name


def drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument(
        "--backends", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"]
    )
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--spread-s", type=float, default=30.0)
    args = parser.parse_args()
    for backend in args.backends:
        print(f"{backend}:")
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                measure(
                    f"sqlite:///{Path(tmp) / 'ferryman.db'}", args.connections, args.interval_s, args.spread_s
                )
            continue
        url, name = postgres_url(args.pg_admin)
        try:
            measure(url, args.connections, args.interval_s, args.spread_s)
        finally:
            drop_database(args.pg_admin, name)


if __name__ == "__main__":
    main()
