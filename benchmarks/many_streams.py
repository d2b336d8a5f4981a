"""A source with many streams: `connections sync` (a job, saving state and stats to the store)
against the ad-hoc `ferryman sync` (no store) of the same source and destination.

    python benchmarks/many_streams.py [--streams 1000 5000] [--records 1] [--runs 3]
                                      [--destination devnull|duckdb]

builtin:source-bench with ``--streams`` streams of ``--records`` records each (a STATE after
each stream's records, a status trace as each stream starts and ends), into
builtin:destination-devnull (or destination-duckdb), on a SQLite store in a temporary home.
Each stream's status change asks for a save of the confirmed state, so this measures what
state persistence costs as the number of streams grows: it should grow with the streams, not
with their square. Prints the median wall time and CPU (the command and its connectors) of each
command, and the ratio. Not a test: it asserts nothing and prints figures for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FERRYMAN = [sys.executable, "-m", "ferryman"]
DESTINATIONS = {"devnull": "builtin:destination-devnull", "duckdb": "builtin:destination-duckdb"}


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the command and every process it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[3:])} failed:\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(streams: int, records: int, destination: str, runs: int) -> dict[str, float]:
    config = json.dumps({"count": records, "streams": streams})
    with tempfile.TemporaryDirectory(prefix="many-streams-") as home:
        env = {**os.environ, "FERRYMAN_HOME": home}
        env.pop("FERRYMAN_DATABASE_URL", None)
        dest_config = json.dumps({"path": str(Path(home) / "db.duckdb")}) if destination == "duckdb" else "{}"
        for args in (
            ("sources", "create", "many", "--connector", "builtin:source-bench", "--config", config),
            (
                "destinations",
                "create",
                "out",
                "--connector",
                DESTINATIONS[destination],
                "--config",
                dest_config,
            ),
            ("connections", "create", "c", "--source", "many", "--destination", "out"),
        ):
            subprocess.run([*FERRYMAN, *args], env=env, capture_output=True, check=True)
        adhoc = [*FERRYMAN, "sync", "--source", "builtin:source-bench", "--source-config", config]
        adhoc += ["--destination", DESTINATIONS[destination], "--destination-config", dest_config]
        job = [*FERRYMAN, "connections", "sync", "c"]
        figures: dict[str, list[float]] = {"adhoc_wall": [], "adhoc_cpu": [], "job_wall": [], "job_cpu": []}
        for _ in range(runs):  # interleaved: this machine's speed drifts
            for name, argv in (("adhoc", adhoc), ("job", job)):
                wall, cpu = timed(argv, env)
                figures[f"{name}_wall"].append(wall)
                figures[f"{name}_cpu"].append(cpu)
    return {name: statistics.median(values) for name, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--records", type=int, default=1, help="records per stream")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--destination", choices=sorted(DESTINATIONS), default="devnull")
    args = parser.parse_args()
    print(f"# {platform.node()} {platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
    what = f"{args.records} record(s) per stream, into {args.destination}"
    print(f"# source-bench, {what}; medians of {args.runs}")
    print(
        "| streams | ferryman sync (no store): wall s, CPU s | connections sync (a job): wall s, CPU s ",
        end="",
    )
    print("| job / ad hoc wall |")
    print("|---:|---:|---:|---:|")
    for streams in args.streams:
        f = measure(streams, args.records, args.destination, args.runs)
        adhoc = f"{f['adhoc_wall']:.2f}, {f['adhoc_cpu']:.2f}"
        job = f"{f['job_wall']:.2f}, {f['job_cpu']:.2f}"
        print(f"| {streams:,} | {adhoc} | {job} | {f['job_wall'] / f['adhoc_wall']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
