"""Store writes and worker CPU of a real sync: airbyte-source-faker into DuckDB, run as a job.

    python benchmarks/state_writes.py [--count 100000] [--runs 3] [--home /tmp/ferryman-bench]

The ``users`` stream of ``pypi:airbyte-source-faker==7.2.1`` (it checkpoints every 100 records)
into builtin:destination-duckdb, as the job of a connection on a SQLite store, run by a
LocalEngine in this process with its default settings (``FERRYMAN_STATE_FLUSH_S`` as set in
the environment: run it once with ``FERRYMAN_STATE_FLUSH_S=0`` to see every state saved). The
faker venv is installed under ``--home`` on first use (PyPI) and reused after.

Prints the median over the runs of: wall time (of the job, and of the sync in it), states the
destination confirmed, the store's state and stream-stats writes, CPU per record of this process
(the engine and the worker), of the two connectors, and of the worker threads alone (the
attempt's ``worker.cpu_s``). Not a test: it asserts nothing and prints figures for docs/performance.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from ferryman.engines.local import LocalEngine
from ferryman.service import JobService
from ferryman.settings import Settings
from ferryman.store import open_store

FAKER = "pypi:airbyte-source-faker==7.2.1"


class CountingStore:
    """The real store, counting the writes a sync makes as it goes."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.state_writes = 0
        self.stats_writes = 0

    def save_state(self, *args: Any, **kwargs: Any) -> None:
        self.state_writes += 1
        self._inner.save_state(*args, **kwargs)

    def save_stream_stats(self, *args: Any, **kwargs: Any) -> None:
        self.stats_writes += 1
        self._inner.save_stream_stats(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def one_run(home: Path, count: int, number: int) -> dict[str, float]:
    settings = dataclasses.replace(Settings.from_env(), home=home)
    store = CountingStore(open_store(f"sqlite:///{home / f'bench-{time.time_ns()}.db'}"))
    service = JobService(store, settings, LocalEngine(store, settings))  # type: ignore[arg-type]
    name = f"faker-{number}"
    service.create_actor("source", name, FAKER, {"count": count, "seed": 42})
    database = home / f"{name}.duckdb"
    service.create_actor("destination", f"{name}-db", "builtin:destination-duckdb", {"path": str(database)})
    service.create_connection(name, name, f"{name}-db", streams=["users"])
    job = service.enqueue_replication(name)
    store.state_writes = store.stats_writes = 0
    before = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    service.run(job)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    connectors = children_after.ru_utime - children.ru_utime + children_after.ru_stime - children.ru_stime
    output = store.list_attempts(job.id)[-1].output or {}
    records = int(output.get("records_committed") or 0)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sync_s = (int(output.get("ended_at_ms") or 0) - int(output.get("started_at_ms") or 0)) / 1000
    return {
        "wall_s": wall,
        "sync_s": sync_s,
        "records": records,
        "states": int(output.get("states_committed") or 0),
        "state_writes": store.state_writes,
        "stats_writes": store.stats_writes,
        "process_us_per_record": cpu / max(records, 1) * 1e6,
        "connectors_us_per_record": connectors / max(records, 1) * 1e6,
        "worker_us_per_record": float(output.get("worker", {}).get("cpu_s", 0.0)) / max(records, 1) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--home", type=Path, default=Path("/tmp/ferryman-bench"))
    args = parser.parse_args()
    args.home.mkdir(parents=True, exist_ok=True)
    runs = [one_run(args.home, args.count, number) for number in range(args.runs)]
    print(f"faker users {args.count:,} -> duckdb, median of {args.runs} runs")
    for key in runs[0]:
        value = statistics.median(run[key] for run in runs)
        print(f"  {key:24} {value:12,.1f}")


if __name__ == "__main__":
    main()
