"""What costs a catalog it never looks at, on a connection of thousands of streams: `state show`,
`state clear --stream`, `connections delete` (each a CLI command, on a fresh copy of the home),
and, in this process, the scheduler's `replan_ahead` over ``--connections`` such connections and
the store's `delete_connection`.

    python benchmarks/catalog_reads.py [--streams 5000] [--connections 20] [--runs 5] [--home DIR]
    python benchmarks/catalog_reads.py --jobs [...]

With ``--jobs``: what showing or waiting for the sync of ``c`` (one attempt, a state per stream
in its output) reads instead -- the web UI's job page, its log's download and its log stream,
a `TemporalEngine.run_jobs` of the ended job, the summary a foreground sync prints, and `jobs
show` (in process and as a command) -- as the JSON of catalogs and outputs the store decoded
for it (counted by a spy around the store, the same on every run) and wall ms.

The home holds connection ``c`` of builtin:source-bench with ``--streams`` streams (discovered by
`connections create`) into builtin:destination-devnull, synced once (so its state has a STATE per
stream), and ``--connections`` - 1 copies of it, each scheduled hourly; ``--home DIR`` keeps it
(made when empty), so two builds can be timed on the same data: run this file with
``PYTHONPATH=<other build's src>``, and both the commands and the in-process figures use that
build. Medians of ``--runs``, wall seconds (a CLI command includes its start-up, about 0.25 s
here). Not a test: it asserts nothing and prints figures for docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ferryman
from ferryman.clock import ManualClock
from ferryman.jobs.schedules import parse_schedule
from ferryman.scheduler import Scheduler
from ferryman.service import JobService
from ferryman.settings import SchedulerSettings, Settings
from ferryman.store import SqlJobStore

FERRYMAN = [sys.executable, "-m", "ferryman"]


def _environment(home: Path) -> dict[str, str]:
    env = {**os.environ, "FERRYMAN_HOME": str(home)}
    env.pop("FERRYMAN_DATABASE_URL", None)
    # The child runs the build this process imported (PYTHONPATH, or the installed one).
    env["PYTHONPATH"] = str(Path(ferryman.__file__).parents[1])
    return env


def prepare(home: Path, streams: int, connections: int) -> None:
    env = _environment(home)
    config = json.dumps({"count": 1, "streams": streams})
    for args in (
        ("sources", "create", "many", "--connector", "builtin:source-bench", "--config", config),
        ("destinations", "create", "out", "--connector", "builtin:destination-devnull", "--config", "{}"),
        ("connections", "create", "c", "--source", "many", "--destination", "out"),
        ("connections", "sync", "c"),
    ):
        subprocess.run([*FERRYMAN, *args], env=env, capture_output=True, check=True)
    with SqlJobStore.open(f"sqlite:///{home / 'ferryman.db'}") as store:
        service = JobService(store, Settings())
        first = store.get_connection("c")
        hourly = parse_schedule("every 1h")
        service.update_connection(first, schedule=hourly)
        for n in range(1, connections):
            made = store.create_connection(f"c{n}", first.source_id, first.destination_id, first.catalog)
            service.update_connection(made, schedule=hourly)


def _fresh(home: Path, scratch: Path) -> Path:
    copy = scratch / "home"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(home, copy)
    return copy


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:])} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def measure(home: Path, runs: int) -> dict[str, float]:
    commands = {
        "`state show c`": ["state", "show", "c"],
        "`state clear c --stream stream_42`": ["state", "clear", "c", "--stream", "stream_42"],
        "`connections delete c`": ["connections", "delete", "c"],
    }
    figures: dict[str, list[float]] = {name: [] for name in commands}
    figures["`replan_ahead` (in process)"] = []
    figures["`delete_connection` (in process)"] = []
    with tempfile.TemporaryDirectory(prefix="catalog-reads-") as scratch:
        for _ in range(runs):
            copy = _fresh(home, Path(scratch))
            env = _environment(copy)
            for name, argv in commands.items():  # in this order: the delete comes last
                figures[name].append(_timed([*FERRYMAN, *argv], env))
            copy = _fresh(home, Path(scratch))
            with SqlJobStore.open(f"sqlite:///{copy / 'ferryman.db'}") as store:
                now = datetime.now(UTC)
                clock = ManualClock(now)
                scheduler = Scheduler(JobService(store, Settings(), clock=clock), SchedulerSettings(), clock)
                start = time.perf_counter()
                scheduler.replan_ahead(now)
                figures["`replan_ahead` (in process)"].append(time.perf_counter() - start)
                doomed = store.get_connection("c1").id
                start = time.perf_counter()
                store.delete_connection(doomed)
                figures["`delete_connection` (in process)"].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in figures.items()}


class _DecodedBytes:
    """The store, adding up the JSON size of the jobs' catalogs and attempts' outputs it returns."""

    def __init__(self, real: SqlJobStore) -> None:
        self.real = real
        self.decoded = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def get_job(self, job_id: int, catalog: bool = True) -> Any:
        found = self.real.get_job(job_id) if catalog else self.real.get_job(job_id, catalog=False)
        if isinstance(found.config.get("catalog"), dict):
            self.decoded += len(json.dumps(found.config["catalog"]))
        return found

    def list_attempts(self, job_id: int, outputs: bool = True) -> Any:
        found = self.real.list_attempts(job_id) if outputs else self.real.list_attempts(job_id, outputs=False)
        self.decoded += sum(len(json.dumps(a.output)) for a in found if a.output is not None)
        return found


def measure_jobs(home: Path, runs: int) -> dict[str, tuple[float, float]]:
    """Each path's (MB of catalog and output JSON decoded, median wall ms)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from ferryman.cli.summary import print_outcome
    from ferryman.engines.temporal.engine import TemporalEngine
    from ferryman.web.app import mount

    env = _environment(home)
    with SqlJobStore.open(f"sqlite:///{home / 'ferryman.db'}") as real:
        job_id = real.list_jobs(scope=str(real.get_connection("c", catalog=False).id), limit=1)[0].id
        spy = _DecodedBytes(real)
        service = JobService(spy, Settings(home=home))  # type: ignore[arg-type]
        app = FastAPI()
        mount(app, service, required=False)
        ended = real.get_job(job_id)  # as a foreground sync has it when it prints its summary
        with TestClient(app) as client:

            def summary() -> None:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    print_outcome(service, ended, False)

            paths: dict[str, Callable[[], Any]] = {
                "web `GET /jobs/{id}`": lambda: client.get(f"/jobs/{job_id}"),
                "web `GET /jobs/{id}/attempts/0/log`": lambda: client.get(f"/jobs/{job_id}/attempts/0/log"),
                "web `GET /jobs/{id}/log/stream?attempt=0`": lambda: client.get(
                    f"/jobs/{job_id}/log/stream?attempt=0"
                ),
                "`TemporalEngine.run_jobs`, the job ended": lambda: TemporalEngine(
                    spy,  # type: ignore[arg-type]
                    Settings(home=home),
                ).run_jobs([job_id]),
                "a foreground sync's summary (`print_outcome`, the job read as it ended)": summary,
                "`jobs show` (`job_document` and its secrets)": lambda: _show(service, job_id),
            }
            figures: dict[str, tuple[float, float]] = {}
            for name, call in paths.items():
                times = []
                for _ in range(runs):
                    spy.decoded = 0
                    start = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - start)
                figures[name] = (spy.decoded / 1e6, 1000 * statistics.median(times))
    command = [*FERRYMAN, "jobs", "show", str(job_id)]
    times = [_timed(command, env) for _ in range(runs)]
    figures[f"`ferryman jobs show {job_id}` (a command)"] = (float("nan"), 1000 * statistics.median(times))
    return figures


def _show(service: JobService, job_id: int) -> None:
    """What ``jobs show`` (without --json) reads: its document, then its secrets."""
    try:
        service.job_document(job_id, outputs=False)  # type: ignore[call-arg]
    except TypeError:  # a build before its ``outputs``
        service.job_document(job_id)
    service.job_secrets(service.store.get_job(job_id, catalog=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--home", help="a home to keep (made when empty)")
    parser.add_argument("--jobs", action="store_true", help="the job reads instead (see above)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="catalog-reads-home-") as made:
        home = Path(args.home or made)
        if not (home / "ferryman.db").exists():
            home.mkdir(parents=True, exist_ok=True)
            prepare(home, args.streams, args.connections)
        print(f"# ferryman from {Path(ferryman.__file__).parent}, load {os.getloadavg()[0]:.1f}")
        if args.jobs:
            print(f"# the sync of c, {args.streams:,} streams; MB decoded, median ms of {args.runs}")
            for name, (decoded, ms) in measure_jobs(home, args.runs).items():
                print(f"| {name} | {decoded:.2f} | {ms:.0f} |")
            print(f"# load at the end {os.getloadavg()[0]:.1f}")
            return
        print(f"# {args.connections} connections of {args.streams:,} streams; medians of {args.runs}, wall s")
        for name, seconds in measure(home, args.runs).items():
            print(f"| {name} | {seconds:.3f} |")
        print(f"# load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
