"""A source with many streams: `connections sync` (a job, saving state and stats to the store)
against the ad-hoc `ferryman sync` (no store) of the same source and destination.

    python benchmarks/many_streams.py [--streams 1000 5000] [--records 1] [--runs 3]
                                      [--destination devnull|duckdb] [--paths]

builtin:source-bench with ``--streams`` streams of ``--records`` records each (a STATE after
each stream's records, a status trace as each stream starts and ends), into
builtin:destination-devnull (or destination-duckdb), on a SQLite store in a temporary home.
Each stream's status change asks for a save of the confirmed state, so this measures what
state persistence costs as the number of streams grows: it should grow with the streams, not
with their square. Prints the median wall time and CPU (the command and its connectors) of each
command, and the ratio. Not a test: it asserts nothing and prints figures for docs/performance.md.

With ``--paths``: what a user does around such a connection, each the median wall time of
``--runs``, after three syncs: ``connections create`` (discovering the source), ``connections
show``, ``jobs show`` of a sync (5,000 stream stats), ``jobs list``, the ad-hoc ``discover``, and,
from a ``ferryman server``, ``GET /v1/jobs/{id}``, ``GET /v1/jobs?connectionId=``, ``GET
/v1/connections/{id}`` and the web UI's ``/jobs`` and ``/connections/{id}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
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


def _free_port() -> int:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        return int(listening.getsockname()[1])


def _get(url: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as answer:
        body = answer.read()
    return time.perf_counter() - start, body


def _served(env: dict[str, str], runs: int, sync_job: int, connection: int) -> dict[str, list[float]]:
    """The API's and the web UI's pages of the connection and its jobs, from a ferryman server."""
    port = _free_port()
    server = subprocess.Popen(
        [*FERRYMAN, "server", "--port", str(port), "--auth", "none", "--no-scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # up to a minute for it to listen
            try:
                _get(f"{base}/health")
                break
            except OSError:
                time.sleep(0.1)
        listed = json.loads(_get(f"{base}/v1/connections")[1])["data"]
        uuid = next(c["connectionId"] for c in listed if c["name"] == "c")
        pages = {
            "GET /v1/jobs/{id}": f"/v1/jobs/{sync_job}",
            "GET /v1/jobs?connectionId=": f"/v1/jobs?connectionId={uuid}",
            "GET /v1/connections/{id}": f"/v1/connections/{uuid}",
            "web /jobs": "/jobs",
            "web /connections/{id}": f"/connections/{connection}",
        }
        figures: dict[str, list[float]] = {name: [] for name in pages}
        for _ in range(runs):
            for name, path in pages.items():
                figures[name].append(_get(base + path)[0])
        return figures
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def measure_paths(streams: int, runs: int, syncs: int = 3) -> dict[str, float]:
    """Median wall seconds of each user path around a connection of ``streams`` streams."""
    config = json.dumps({"count": 1, "streams": streams})
    with tempfile.TemporaryDirectory(prefix="many-streams-") as home:
        env = {**os.environ, "FERRYMAN_HOME": home}
        env.pop("FERRYMAN_DATABASE_URL", None)
        for args in (
            ("sources", "create", "many", "--connector", "builtin:source-bench", "--config", config),
            ("destinations", "create", "out", "--connector", DESTINATIONS["devnull"], "--config", "{}"),
            ("connections", "create", "c", "--source", "many", "--destination", "out"),
        ):
            subprocess.run([*FERRYMAN, *args], env=env, capture_output=True, check=True)
        for _ in range(syncs):
            subprocess.run([*FERRYMAN, "connections", "sync", "c"], env=env, capture_output=True, check=True)
        listed = subprocess.run(
            [*FERRYMAN, "jobs", "list", "--type", "sync", "--json"], env=env, capture_output=True, check=True
        )
        sync_job = json.loads(listed.stdout)["jobs"][0]["id"]
        commands = {
            "connections create": [
                "connections",
                "create",
                "c{run}",
                "--source",
                "many",
                "--destination",
                "out",
            ],
            "connections show": ["connections", "show", "c"],
            "jobs show (a sync)": ["jobs", "show", str(sync_job)],
            "jobs list": ["jobs", "list"],
            "discover (ad hoc)": ["discover", "builtin:source-bench", "--config", config],
        }
        figures: dict[str, list[float]] = {name: [] for name in commands}
        for run in range(runs):
            for name, argv in commands.items():
                named = [arg.replace("{run}", str(run)) for arg in argv]  # a new connection each run
                figures[name].append(timed([*FERRYMAN, *named], env)[0])
        figures.update(_served(env, runs, sync_job, connection=1))
    return {name: statistics.median(values) for name, values in figures.items()}


def main_paths(streams: list[int], runs: int) -> None:
    print(f"# {platform.node()} {platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
    print(f"# source-bench, one record per stream, three syncs into devnull; medians of {runs}, wall s")
    found = {count: measure_paths(count, runs) for count in streams}
    print("| path | " + " | ".join(f"{count:,} streams" for count in streams) + " |")
    print("|---|" + "---:|" * len(streams))
    for name in found[streams[0]]:
        print(f"| {name} | " + " | ".join(f"{found[count][name]:.2f}" for count in streams) + " |")
    print(f"# load at the end {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--records", type=int, default=1, help="records per stream")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--destination", choices=sorted(DESTINATIONS), default="devnull")
    parser.add_argument("--paths", action="store_true", help="time the CLI, API and web paths instead")
    args = parser.parse_args()
    if args.paths:
        main_paths(args.streams, args.runs)
        return
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
