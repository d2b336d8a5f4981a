"""Ferryman against PyAirbyte: airbyte-source-faker into DuckDB and PostgreSQL, side by side.

    python benchmarks/vs_pyairbyte.py [--count 10000] [--seed 42] [--runs 2]
                                      [--targets duckdb postgres] [--tools ferryman pyairbyte]
                                      [--cache-dir ~/.cache/ferryman-bench]
                                      [--pg-admin-url postgresql://postgres@127.0.0.1:5432/postgres]

The same job for both: airbyte-source-faker 7.2.1 (the demo's), config ``{"count": N, "seed":
S}``, every stream full refresh, into a fresh target (a new DuckDB file, a new PostgreSQL
database made through the admin URL and dropped afterwards).

- **Ferryman**: ``ferryman sync --full-refresh --json`` (ad hoc, a fresh FERRYMAN_HOME per run)
  with ``builtin:destination-duckdb`` or ``builtin:destination-postgres``.
- **PyAirbyte** (PyPI ``airbyte``): ``get_source("source-faker", local_executable=...)`` and
  ``source.read(cache=..., force_full_refresh=True)`` into its ``DuckDBCache`` or
  ``PostgresCache``, offline (``AIRBYTE_OFFLINE_MODE=1``, ``DO_NOT_TRACK=1``).

Both run the one faker executable installed by Ferryman's own PyPI installer under the cache
dir. PyAirbyte is installed into a venv of its own under the cache dir (it needs Python 3.10 to
3.12 and ~100 packages; none of them become the project's dependencies). Runs are interleaved
(Ferryman then PyAirbyte, DuckDB then PostgreSQL, ``--runs`` times). Each is timed from the
start of its command to its exit, imports, spec and discover included: what a user waits. After
each run the target's rows are counted per table, and the two tools must have stored the same
counts. Prints seconds and records/s per run and the medians. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import psycopg
from _venvs import DEFAULT_CACHE_DIR, prepare_tools

STREAMS = ("products", "users", "purchases")


class Target:
    """A fresh DuckDB file or PostgreSQL database for one run, counted and removed after it."""

    def __init__(self, kind: str, workdir: Path, admin_url: str) -> None:
        self.kind = kind
        self.path = workdir / f"{uuid.uuid4().hex[:8]}.duckdb"
        self.admin_url = admin_url
        self.database = f"ferryman_vs_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> Target:
        if self.kind == "postgres":
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        return self

    def __exit__(self, *exc: object) -> None:
        if self.kind == "postgres":
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        self.path.unlink(missing_ok=True)

    @property
    def server(self) -> dict[str, Any]:
        info = psycopg.conninfo.conninfo_to_dict(self.admin_url)
        return {
            "host": str(info.get("host", "127.0.0.1")),
            "port": int(info.get("port", 5432)),
            "database": self.database,
            "username": str(info.get("user", "postgres")),
            "password": str(info.get("password", "")),
        }

    def counts(self) -> dict[str, int]:
        """Rows per faker stream, as a user would count them."""
        if self.kind == "duckdb":
            with duckdb.connect(str(self.path), read_only=True) as db:
                return {s: db.execute(f'SELECT count(*) FROM main."{s}"').fetchall()[0][0] for s in STREAMS}
        with psycopg.connect(self.admin_url.rsplit("/", 1)[0] + "/" + self.database) as conn:
            return {
                s: conn.execute(f'SELECT count(*) FROM public."{s}"').fetchone()[0]  # type: ignore[index]
                for s in STREAMS
            }


def run_ferryman(executable: Path, config: dict[str, Any], target: Target, home: Path) -> float:
    if target.kind == "duckdb":
        destination, dest_config = "builtin:destination-duckdb", {"path": str(target.path)}
    else:
        server = target.server
        destination = "builtin:destination-postgres"
        dest_config = {**{k: v for k, v in server.items() if k != "password" or v}, "ssl_mode": "disable"}
    command = [
        *(sys.executable, "-m", "ferryman", "sync", "--source", f"exec:{executable}"),
        *("--source-config", json.dumps(config), "--destination", destination),
        *("--destination-config", json.dumps(dest_config), "--full-refresh", "--json"),
    ]
    env = {**os.environ, "FERRYMAN_HOME": str(home), "FERRYMAN_PROGRESS_INTERVAL_S": "0"}
    env.pop("FERRYMAN_DATABASE_URL", None)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"ferryman sync failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed


def run_pyairbyte(
    python: Path, runner: Path, executable: Path, config: dict[str, Any], target: Target
) -> float:
    job: dict[str, Any] = {"executable": str(executable), "config": config, "target": target.kind}
    if target.kind == "duckdb":
        job["path"] = str(target.path)
    else:
        server = target.server
        job["postgres"] = {
            "host": server["host"],
            "port": server["port"],
            "database": server["database"],
            "username": server["username"],
            "password": server["password"] or "unused",  # trust auth ignores it; the cache needs one
        }
    env = {**os.environ, "AIRBYTE_OFFLINE_MODE": "1", "DO_NOT_TRACK": "1"}
    started = time.perf_counter()
    done = subprocess.run([python, runner, json.dumps(job)], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"PyAirbyte failed ({done.returncode}): {(done.stdout + done.stderr)[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000, help="faker's count (users; purchases follow)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--targets", nargs="+", choices=["duckdb", "postgres"], default=["duckdb", "postgres"]
    )
    parser.add_argument(
        "--tools", nargs="+", choices=["ferryman", "pyairbyte"], default=["ferryman", "pyairbyte"]
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    cache_dir: Path = args.cache_dir
    executable, version, python, runner, tools = prepare_tools(cache_dir, args.tools)
    config = {"count": args.count, "seed": args.seed}
    print(f"faker {version} ({executable}), config {json.dumps(config)}, {args.runs} interleaved runs")
    print(f"{'tool':<11}{'target':<10}{'run':>4}{'records':>10}{'seconds':>9}{'records/s':>11}")
    times: dict[tuple[str, str], list[float]] = {}
    stored: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(prefix="ferryman-vs-pyairbyte-") as tmp:
        workdir = Path(tmp)
        for number in range(1, args.runs + 1):
            for kind in args.targets:
                for tool in tools:
                    with Target(kind, workdir, args.pg_admin_url) as target:
                        if tool == "ferryman":
                            seconds = run_ferryman(executable, config, target, workdir / f"home-{number}")
                        else:
                            assert python is not None
                            seconds = run_pyairbyte(python, runner, executable, config, target)
                        counts = target.counts()
                    if stored.setdefault(kind, counts) != counts:
                        raise SystemExit(f"{tool} stored {counts} in {kind}, the other {stored[kind]}")
                    records = sum(counts.values())
                    times.setdefault((tool, kind), []).append(seconds)
                    rate = records / seconds
                    print(
                        f"{tool:<11}{kind:<10}{number:>4}{records:>10,}{seconds:>9.1f}{rate:>11,.0f}",
                        flush=True,
                    )
    print("\nmedians")
    for (tool, kind), found in times.items():
        records = sum(stored[kind].values())
        median = statistics.median(found)
        print(f"{tool:<11}{kind:<10}{records:>14,}{median:>9.1f}{records / median:>11,.0f}")


if __name__ == "__main__":
    main()
