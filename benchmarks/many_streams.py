"""A source with many streams: `connections sync` (a job, saving state and stats to the store)
against the ad-hoc `ferryman sync` (no store) of the same source and destination.

    python benchmarks/many_streams.py [--streams 1000 5000] [--records 1] [--runs 3]
                                      [--destination devnull|duckdb] [--full-refresh] [--paths]

builtin:source-bench with ``--streams`` streams of ``--records`` records each (a STATE after
each stream's records, a status trace as each stream starts and ends), into
builtin:destination-devnull (or destination-duckdb), on a SQLite store in a temporary home;
every stream in its best mode, or, with ``--full-refresh``, full_refresh overwrite.
Each stream's status change asks for a save of the confirmed state, so this measures what
state persistence costs as the number of streams grows: it should grow with the streams, not
with their square. Prints the median wall time and CPU (the command and its connectors) of each
command, and the ratio. Not a test: it asserts nothing and prints figures for docs/performance.md.

With ``--paths``: what a user does around such a connection, each the median wall time of
``--runs``, after three syncs: ``connections create`` (discovering the source), ``connections
show``, ``jobs show`` of a sync (5,000 stream stats), ``jobs list``, the ad-hoc ``discover``, and,
from a ``ferryman server``, ``GET /v1/jobs/{id}``, ``GET /v1/jobs?connectionId=``, ``GET
/v1/connections/{id}`` and the web UI's ``/jobs`` and ``/connections/{id}``.

With ``--lists``: the lists of connections and the counts of jobs, over ``--connections``
connections (default 20) of ``--streams`` streams (the first figure given) with one sync each:
``connections list`` (and ``--json``), and from a ``ferryman server`` the web UI's ``/``, ``GET
/v1/connections`` (a page of 20 and of 1), the config API's ``connections/list`` and
``jobs/list`` (a page of 1 with its total) and ``/metrics``. ``--home DIR`` keeps the home (made
when it is empty), so two builds can be timed on the same data.
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


def measure(
    streams: int, records: int, destination: str, runs: int, full_refresh: bool = False
) -> dict[str, float]:
    config = json.dumps({"count": records, "streams": streams})
    with tempfile.TemporaryDirectory(prefix="many-streams-") as home:
        env = {**os.environ, "FERRYMAN_HOME": home}
        env.pop("FERRYMAN_DATABASE_URL", None)
        refresh = ["--full-refresh"] if full_refresh else []
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
            ("connections", "create", "c", "--source", "many", "--destination", "out", *refresh),
        ):
            subprocess.run([*FERRYMAN, *args], env=env, capture_output=True, check=True)
        adhoc = [*FERRYMAN, "sync", "--source", "builtin:source-bench", "--source-config", config]
        adhoc += ["--destination", DESTINATIONS[destination], "--destination-config", dest_config, *refresh]
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


def _start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server = subprocess.Popen(
        [*FERRYMAN, "server", "--port", str(port), "--auth", "none", "--no-scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return server, f"http://127.0.0.1:{port}"


def _wait_listening(base: str) -> None:
    for _ in range(600):  # up to a minute for it to listen
        try:
            _get(f"{base}/health")
            return
        except OSError:
            time.sleep(0.1)


def _served(env: dict[str, str], runs: int, sync_job: int, connection: int) -> dict[str, list[float]]:
    """The API's and the web UI's pages of the connection and its jobs, from a ferryman server."""
    server, base = _start_server(env)
    try:
        _wait_listening(base)
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


def _post(url: str, body: dict[str, object]) -> float:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as answer:
        answer.read()
    return time.perf_counter() - start


def _prepare_lists(env: dict[str, str], streams: int, connections: int) -> None:
    config = json.dumps({"count": 1, "streams": streams})
    for args in (
        ("sources", "create", "many", "--connector", "builtin:source-bench", "--config", config),
        ("destinations", "create", "out", "--connector", DESTINATIONS["devnull"], "--config", "{}"),
    ):
        subprocess.run([*FERRYMAN, *args], env=env, capture_output=True, check=True)
    for n in range(connections):  # each discovers the source
        create = ("connections", "create", f"c{n}", "--source", "many", "--destination", "out")
        subprocess.run([*FERRYMAN, *create], env=env, capture_output=True, check=True)
        subprocess.run([*FERRYMAN, "connections", "sync", f"c{n}"], env=env, capture_output=True, check=True)


def measure_lists(home: str, streams: int, connections: int, runs: int) -> dict[str, float]:
    env = {**os.environ, "FERRYMAN_HOME": home}
    env.pop("FERRYMAN_DATABASE_URL", None)
    if not (Path(home) / "ferryman.db").exists():
        _prepare_lists(env, streams, connections)
    figures: dict[str, list[float]] = {"connections list": [], "connections list --json": []}
    for _ in range(runs):
        figures["connections list"].append(timed([*FERRYMAN, "connections", "list"], env)[0])
        figures["connections list --json"].append(timed([*FERRYMAN, "connections", "list", "--json"], env)[0])
    server, base = _start_server(env)
    gets = {
        "web /": "/",
        "GET /v1/connections (20)": "/v1/connections?limit=20",
        "GET /v1/connections?limit=1": "/v1/connections?limit=1",
        "/metrics": "/metrics",
    }
    posts: dict[str, tuple[str, dict[str, object]]] = {
        "POST /api/v1/connections/list": ("/api/v1/connections/list", {}),
        "POST /api/v1/jobs/list (1 of the syncs)": (
            "/api/v1/jobs/list",
            {"configTypes": ["sync"], "pagination": {"pageSize": 1, "rowOffset": 0}},
        ),
    }
    try:
        _wait_listening(base)
        for name in [*gets, *posts]:
            figures[name] = []
        for _ in range(runs):
            for name, path in gets.items():
                figures[name].append(_get(base + path)[0])
            for name, (path, body) in posts.items():
                figures[name].append(_post(base + path, body))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return {name: statistics.median(values) for name, values in figures.items()}


def main_lists(home: str | None, streams: int, connections: int, runs: int) -> None:
    print(f"# {platform.node()} {platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
    print(f"# {connections} connections of {streams:,} streams, one sync each; medians of {runs}, wall s")
    with tempfile.TemporaryDirectory(prefix="many-streams-") as scratch:
        found = measure_lists(home or scratch, streams, connections, runs)
    for name, seconds in found.items():
        print(f"| {name} | {seconds:.2f} |")
    print(f"# load at the end {os.getloadavg()[0]:.1f}")


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
    parser.add_argument("--full-refresh", action="store_true", help="full_refresh overwrite every stream")
    parser.add_argument("--paths", action="store_true", help="time the CLI, API and web paths instead")
    parser.add_argument("--lists", action="store_true", help="time the lists of connections and jobs instead")
    parser.add_argument("--connections", type=int, default=20, help="with --lists")
    parser.add_argument("--home", help="with --lists: a FERRYMAN_HOME to keep (made when empty)")
    args = parser.parse_args()
    if args.lists:
        main_lists(args.home, args.streams[0], args.connections, args.runs)
        return
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
        f = measure(streams, args.records, args.destination, args.runs, args.full_refresh)
        adhoc = f"{f['adhoc_wall']:.2f}, {f['adhoc_cpu']:.2f}"
        job = f"{f['job_wall']:.2f}, {f['job_cpu']:.2f}"
        print(f"| {streams:,} | {adhoc} | {job} | {f['job_wall'] / f['adhoc_wall']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
