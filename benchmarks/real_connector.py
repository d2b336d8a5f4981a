"""A real connector three ways: bare, through Ferryman, through PyAirbyte (issue #15, item 5).

    python benchmarks/real_connector.py [--counts 10000 100000] [--runs 2] [--seed 42]
                                        [--interval 0.05] [--cache-dir ~/.cache/ferryman-bench]

airbyte-source-faker 7.2.1, config ``{"count": N, "seed": S}``, all three streams (products,
users, purchases) full refresh, interleaved per round (bare, Ferryman, Ferryman into devnull, ad
hoc, PyAirbyte):

- **bare**: ``source-faker read --config ... --catalog ...`` with stdout to /dev/null; the
  configured catalog (every stream, full refresh, overwrite) is made once from its discover,
  outside the timing.
- **Ferryman** (``ferryman``): a stored connection, as a user runs it every day. Untimed, like
  the bare run's catalog: a fresh FERRYMAN_HOME per run whose ``venvs`` is a link to the cache
  dir's (the same installed faker; no install in the timing), ``sources create`` (faker),
  ``destinations create`` (builtin:destination-duckdb), ``connections create --full-refresh``
  (faker's discover). Timed: ``ferryman connections sync bench --json``. The aim is judged on
  this row.
- **Ferryman into devnull** (``devnull``): the same stored connection with
  ``builtin:destination-devnull`` in place of DuckDB: Ferryman's own cost (start, record path,
  state saves, end) without a destination's load competing with the source for the CPU.
- **Ferryman ad hoc** (``adhoc``): ``ferryman sync --source pypi:airbyte-source-faker==7.2.1
  --destination builtin:destination-duckdb --full-refresh --json`` in a fresh FERRYMAN_HOME,
  which runs faker's discover (and, the first time a venv is used, its spec) before the read.
- **PyAirbyte** (``vs_pyairbyte.py``'s runner and venv): ``get_source("source-faker",
  local_executable=<the same venv>/bin/source-faker)``, ``read`` into a ``DuckDBCache``,
  offline (``AIRBYTE_OFFLINE_MODE=1``, ``DO_NOT_TRACK=1``).

Wall time is the command's, start to exit (imports, spec, discover included for the two tools).
How CPU and memory are measured: the command is started with Popen and its process tree sampled
with psutil every ``--interval`` s. Its exit is detected with ``waitid(WNOWAIT)``, which leaves it
a zombie whose ``/proc`` times are final, so the root's own CPU (user + system) and the CPU of
all its reaped descendants (``children_user + children_system``) are exact. Roles:

- *worker*: the root's own CPU (Ferryman's ``ferryman connections sync`` or ``ferryman sync``
  process, which runs the sync in process; PyAirbyte's Python process, which is also its
  destination: it parses the records and loads the cache in process).
- *destination* (Ferryman only): every ``ferryman.builtin.destination_*`` process seen, own plus
  reaped children, at its last sample: a lower bound, short by at most one interval per process.
- *source*: the root's reaped children minus the destination (bare: the whole tree, faker and
  its pool of generator processes).

Peak RSS: the largest sum of RSS over the tree at one sample; worker peak: the root's VmHWM.
*starts*: how many faker processes the root started (its children running ``source-faker``,
seen at one sample at least; the bare run is one): spec, check or discover runs show here.
Each tool's stored rows are counted per table and must match. Not a test; prints figures.
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
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import duckdb
import psutil
from _venvs import DEFAULT_CACHE_DIR, FAKER, prepare_tools

STREAMS = ("products", "users", "purchases")
CONNECTION = "bench"
TOOLS = ("bare", "ferryman", "devnull", "adhoc", "pyairbyte")


@dataclass
class Measured:
    seconds: float
    worker_cpu: float
    destination_cpu: float
    source_cpu: float
    peak_tree_rss: int
    peak_worker_rss: int
    source_starts: int = 1


def _own(times: Any) -> float:  # psutil's pcputimes
    return float(times.user + times.system)


def _reaped(times: Any) -> float:
    return float(times.children_user + times.children_system)


def _hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(command: list[str], env: dict[str, str], stdout: IO[bytes] | int, interval: float) -> Measured:
    """Run the command, sampling its process tree until it exits (see the module's docstring)."""
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=stdout, stderr=errors)
        root = psutil.Process(proc.pid)
        destinations: dict[int, float] = {}
        sources: set[int] = set()
        peak_tree = peak_worker = 0
        while True:
            done = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if done is not None:
                elapsed = time.perf_counter() - started
                final = root.cpu_times()
                break
            peak_worker = max(peak_worker, _hwm(proc.pid))
            tree = 0
            try:
                descendants = root.children(recursive=True)
            except psutil.Error:
                descendants = []
            for process in [root, *descendants]:
                try:
                    with process.oneshot():
                        tree += process.memory_info().rss
                        if process is root:
                            continue
                        cmdline = process.cmdline()
                        if any("ferryman.builtin.destination_" in part for part in cmdline):
                            destinations[process.pid] = _own(process.cpu_times()) + _reaped(
                                process.cpu_times()
                            )
                        elif process.ppid() == proc.pid and any("source-faker" in part for part in cmdline):
                            sources.add(process.pid)
                except psutil.Error:
                    continue
            peak_tree = max(peak_tree, tree)
            time.sleep(interval)
        code = proc.wait()
        if code:
            errors.seek(0)
            raise SystemExit(
                f"{command[:3]} failed ({code}): {errors.read()[-3000:].decode(errors='replace')}"
            )
    destination = sum(destinations.values())
    return Measured(
        seconds=elapsed,
        worker_cpu=_own(final),
        destination_cpu=destination,
        source_cpu=_reaped(final) - destination,
        peak_tree_rss=peak_tree,
        peak_worker_rss=peak_worker,
        source_starts=len(sources),
    )


def ferryman_home(workdir: Path, cache_dir: Path, name: str) -> dict[str, str]:
    """The environment of a Ferryman run: a fresh FERRYMAN_HOME sharing the cache's venvs."""
    home = workdir / f"home-{name}"
    home.mkdir()
    (home / "venvs").symlink_to(cache_dir / "venvs")
    env = {**os.environ, "FERRYMAN_HOME": str(home), "FERRYMAN_PROGRESS_INTERVAL_S": "0"}
    env.pop("FERRYMAN_DATABASE_URL", None)
    return env


def create_connection(env: dict[str, str], config: dict[str, Any], target: Path | None) -> None:
    """Faker, the DuckDB destination (``target`` None: destination-devnull) and a full-refresh
    connection between them: the set-up a user does once, untimed (like the bare run's catalog)."""
    ferryman = [sys.executable, "-m", "ferryman"]
    source = ["--connector", f"pypi:{FAKER[0]}=={FAKER[1]}", "--config", json.dumps(config)]
    destination = ["--connector", "builtin:destination-devnull"]
    if target is not None:
        destination = [
            "--connector",
            "builtin:destination-duckdb",
            "--config",
            json.dumps({"path": str(target)}),
        ]
    steps = [
        ["sources", "create", "faker", *source],
        ["destinations", "create", "duckdb", *destination],
        ["connections", "create", CONNECTION, "-s", "faker", "-d", "duckdb", "--full-refresh"],
    ]
    for step in steps:
        done = subprocess.run([*ferryman, *step, "--json"], env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"ferryman {' '.join(step[:2])} failed: {(done.stderr or done.stdout)[-3000:]}")


def configured_catalog(executable: Path, config_path: Path, out: Path) -> None:
    """Every stream faker discovers, full refresh into overwrite: what the two tools also sync."""
    found = subprocess.run(
        [str(executable), "discover", "--config", str(config_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in found.stdout.splitlines():
        message = json.loads(line) if line.startswith("{") else {}
        if message.get("type") == "CATALOG":
            streams = [
                {"stream": s, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}
                for s in message["catalog"]["streams"]
            ]
            out.write_text(json.dumps({"streams": streams}))
            return
    raise SystemExit(f"faker discover printed no catalog: {found.stderr[-2000:]}")


def count_rows(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as db:
        return {s: db.execute(f'SELECT count(*) FROM main."{s}"').fetchall()[0][0] for s in STREAMS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, nargs="+", default=[2], help="one per count, or one for all")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--interval", type=float, default=0.05, help="psutil sampling interval, s")
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args()
    cache_dir: Path = args.cache_dir
    executable, version, python, runner, tools = prepare_tools(cache_dir, args.tools)
    runs = args.runs * len(args.counts) if len(args.runs) == 1 else args.runs
    print(f"faker {version}, streams {', '.join(STREAMS)}, seed {args.seed}, nproc {os.cpu_count()}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    header = (
        f"{'count':>8}{'run':>4} {'tool':<10}{'records':>9}{'wall s':>8}{'ratio':>7}"
        f"{'worker µs/r':>12}{'dest µs/r':>10}{'source µs/r':>12}{'tree MB':>9}{'worker MB':>10}"
        f"{'starts':>7}"
    )
    print(header, flush=True)
    results: dict[tuple[int, str], list[tuple[Measured, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="ferryman-real-connector-") as tmp:
        workdir = Path(tmp)
        for count, rounds in zip(args.counts, runs, strict=True):
            config = {"count": count, "seed": args.seed}
            config_path = workdir / f"config-{count}.json"
            config_path.write_text(json.dumps(config))
            catalog_path = workdir / f"catalog-{count}.json"
            configured_catalog(executable, config_path, catalog_path)
            stored: dict[str, int] | None = None
            for number in range(1, rounds + 1):
                bare_seconds: float | None = None
                for tool in tools:
                    target = workdir / f"{tool}-{count}-{number}.duckdb"
                    env = {**os.environ}
                    out: IO[bytes] | int = subprocess.DEVNULL
                    if tool == "bare":
                        command = [str(executable), "read", "--config", str(config_path)]
                        command += ["--catalog", str(catalog_path)]
                    elif tool in ("ferryman", "devnull"):
                        env = ferryman_home(workdir, cache_dir, f"{tool}-{count}-{number}")
                        create_connection(env, config, target if tool == "ferryman" else None)
                        command = [sys.executable, "-m", "ferryman", "connections", "sync", CONNECTION]
                        command.append("--json")
                    elif tool == "adhoc":
                        env = ferryman_home(workdir, cache_dir, f"{tool}-{count}-{number}")
                        command = [sys.executable, "-m", "ferryman", "sync"]
                        command += [
                            "--source",
                            f"pypi:{FAKER[0]}=={FAKER[1]}",
                            "--source-config",
                            json.dumps(config),
                        ]
                        command += ["--destination", "builtin:destination-duckdb"]
                        command += ["--destination-config", json.dumps({"path": str(target)})]
                        command += ["--full-refresh", "--json"]
                    else:
                        assert python is not None
                        job = {"executable": str(executable), "config": config, "target": "duckdb"}
                        command = [str(python), str(runner), json.dumps({**job, "path": str(target)})]
                        env.update(AIRBYTE_OFFLINE_MODE="1", DO_NOT_TRACK="1")
                    measured = measure(command, env, out, args.interval)
                    if tool == "bare":  # the connector is the root: its own CPU is the source's too
                        bare_seconds = measured.seconds
                        measured.source_cpu += measured.worker_cpu
                        measured.worker_cpu = 0.0
                        measured.source_starts = 1
                    elif tool != "devnull":  # devnull stores nothing to count
                        counts = count_rows(target)
                        stored = stored or counts
                        if counts != stored:
                            raise SystemExit(f"{tool} stored {counts}, another tool {stored}")
                        target.unlink()
                    # faker makes 100 products, N users and N purchases (checked against the tools' counts)
                    records = sum(stored.values()) if stored else count + 100 + count
                    ratio = bare_seconds / measured.seconds if bare_seconds else float("nan")
                    results.setdefault((count, tool), []).append((measured, ratio))
                    print(_row(count, number, tool, records, measured, ratio), flush=True)
            for tool in tools:
                found = results[(count, tool)]
                records = sum(stored.values()) if stored else 0
                median = _median([m for m, _ in found])
                ratio = statistics.median(r for _, r in found)
                print(_row(count, 0, tool, records, median, ratio).replace("   0 ", " med ", 1), flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


def _median(found: list[Measured]) -> Measured:
    return Measured(
        seconds=statistics.median(m.seconds for m in found),
        worker_cpu=statistics.median(m.worker_cpu for m in found),
        destination_cpu=statistics.median(m.destination_cpu for m in found),
        source_cpu=statistics.median(m.source_cpu for m in found),
        peak_tree_rss=int(statistics.median(m.peak_tree_rss for m in found)),
        peak_worker_rss=int(statistics.median(m.peak_worker_rss for m in found)),
        source_starts=max(m.source_starts for m in found),
    )


def _row(count: int, number: int, tool: str, records: int, m: Measured, ratio: float) -> str:
    per = 1e6 / records
    worker = "-" if tool == "bare" else f"{m.worker_cpu * per:.1f}"
    dest = {"bare": "-", "pyairbyte": "(worker)"}.get(tool, f"{m.destination_cpu * per:.1f}")
    return (
        f"{count:>8}{number:>4} {tool:<10}{records:>9,}{m.seconds:>8.1f}{ratio:>7.2f}"
        f"{worker:>12}{dest:>10}{m.source_cpu * per:>12.1f}"
        f"{m.peak_tree_rss / 2**20:>9.0f}{m.peak_worker_rss / 2**20:>10.1f}{m.source_starts:>7}"
    )


if __name__ == "__main__":
    main()
