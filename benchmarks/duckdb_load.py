"""destination-duckdb's CPU per record on airbyte-source-faker's records (issue #15).

    python benchmarks/duckdb_load.py [--count 20000] [--seed 42] [--runs 10]
                                     [--before /path/to/older/src] [--cache-dir ~/.cache/ferryman-bench]

faker 7.2.1 (``{"count": N, "seed": S}``, every stream, full refresh into overwrite) is read once
and its RECORD and STATE lines kept in ``<cache-dir>/duckdb-load/``. Then ``python -m
ferryman.builtin.destination_duckdb write`` is fed that file on stdin, ``--runs`` times, into a
fresh database each time; its CPU (user + system, from ``RUSAGE_CHILDREN``, so other processes on
the machine do not count) is measured, and so is a run fed only the STATE lines (start-up,
imports, the tables made, no records). Per record: (CPU - that fixed CPU) / records.

``--before`` names an older checkout's ``src`` directory (with its built C extension), put first
on PYTHONPATH: the two builds run interleaved, one after the other in each round. Not a test;
prints figures for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _venvs import DEFAULT_CACHE_DIR, faker_venv
from real_connector import configured_catalog


def record_input(cache_dir: Path, count: int, seed: int) -> tuple[Path, Path, Path]:
    """faker's RECORD and STATE lines, its STATE lines alone, and the configured catalog."""
    work = cache_dir / "duckdb-load"
    work.mkdir(parents=True, exist_ok=True)
    messages = work / f"faker-{count}-{seed}.jsonl"
    states = work / f"states-{count}-{seed}.jsonl"
    catalog = work / f"catalog-{count}-{seed}.json"
    if messages.exists() and states.exists() and catalog.exists():
        return messages, states, catalog
    venv, _ = faker_venv(cache_dir)
    config = work / f"config-{count}-{seed}.json"
    config.write_text(json.dumps({"count": count, "seed": seed}))
    configured_catalog(venv / "bin" / "source-faker", config, catalog)
    read = [str(venv / "bin" / "source-faker"), "read", "--config", str(config), "--catalog", str(catalog)]
    done = subprocess.run(read, capture_output=True, check=True)
    kept = [line for line in done.stdout.splitlines() if json.loads(line).get("type") in ("RECORD", "STATE")]
    messages.write_bytes(b"".join(line + b"\n" for line in kept))
    states.write_bytes(b"".join(line + b"\n" for line in kept if b'"RECORD"' not in line[:40]))
    return messages, states, catalog


def destination_cpu(env: dict[str, str], stdin: Path, catalog: Path) -> float:
    with tempfile.TemporaryDirectory() as work:
        config = Path(work) / "config.json"
        config.write_text(json.dumps({"path": f"{work}/db.duckdb"}))
        command = [sys.executable, "-m", "ferryman.builtin.destination_duckdb", "write"]
        command += ["--config", str(config), "--catalog", str(catalog)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with stdin.open("rb") as source:
            subprocess.run(command, stdin=source, stdout=subprocess.DEVNULL, env=env, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--before", type=Path, help="an older checkout's src directory, to compare")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args()
    messages, states, catalog = record_input(args.cache_dir, args.count, args.seed)
    records = sum(1 for line in messages.open("rb") if b'"RECORD"' in line[:40])
    builds = {"this build": dict(os.environ)}
    if args.before is not None:
        builds = {"before": dict(os.environ, PYTHONPATH=str(args.before.resolve())), **builds}
    total: dict[str, list[float]] = {name: [] for name in builds}
    fixed: dict[str, list[float]] = {name: [] for name in builds}
    for _ in range(args.runs):
        for name, env in builds.items():
            total[name].append(destination_cpu(env, messages, catalog))
            fixed[name].append(destination_cpu(env, states, catalog))
    print(f"{records:,} records (faker count {args.count}, seed {args.seed}), {args.runs} runs, medians")
    print(f"{'build':12} {'CPU s':>7} {'fixed s':>8} {'us/record':>10} {'best':>6}")
    for name in builds:
        cpu, start = statistics.median(total[name]), statistics.median(fixed[name])
        best = (min(total[name]) - min(fixed[name])) / records * 1e6
        print(f"{name:12} {cpu:7.3f} {start:8.3f} {(cpu - start) / records * 1e6:10.2f} {best:6.2f}")


if __name__ == "__main__":
    main()
