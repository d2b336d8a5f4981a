"""What a quiet sync costs the worker: CPU seconds per wall second while the source mostly sleeps.

    python benchmarks/idle_supervision.py [--seconds 20] [--gap 0.2] [--runs 3] [--mode worker engine]

The source (tests/connectors/scripted_source.py) sends one record and one STATE, then sleeps
``--gap`` seconds, for ``--seconds`` seconds; builtin:destination-devnull takes them and echoes
the states. Nearly all of the run is waiting, so whatever CPU this process uses is the cost of
watching the connectors (the supervisor, the pipe readers, the engine's loops), not of moving
data.

    worker   ReplicationWorker.run in this process (what every engine runs), states handed to a
             callback that keeps nothing
    engine   the same sync as a job of a connection on a SQLite store, run by a LocalEngine in
             this process with its default intervals (what `ferryman connections sync` does,
             minus the progress display): states and stats go to the store

Prints, per mode, the median over the runs of: CPU of this process (user+sys, from getrusage)
per wall second of the sync, voluntary context switches per second (how often a thread of this
process went to sleep: a proxy for wake-ups), and the store's state writes (engine mode).
Not a test: it asserts nothing and prints figures for docs/performance.md.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.connectors

from ferryman.connectors import parse_reference, resolve  # noqa: E402
from ferryman.settings import Settings  # noqa: E402
from ferryman.workers import AttemptContext, ConnectorInput, ReplicationWorker, SyncInput  # noqa: E402

SCRIPTED = ROOT / "tests" / "connectors" / "scripted_source.py"
CATALOG = {
    "streams": [
        {
            "stream": {
                "name": "users",
                "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
                "supported_sync_modes": ["full_refresh", "incremental"],
            },
            "sync_mode": "incremental",
            "cursor_field": ["id"],
            "destination_sync_mode": "append",
        }
    ]
}


def quiet_steps(seconds: float, gap: float) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for _ in range(max(1, int(seconds / gap))):
        steps += [{"records": 1}, {"state": {"name": "users"}}, {"sleep": gap}]
    return steps


def _usage() -> tuple[float, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_nvcsw


def measured(run: Callable[[], int]) -> tuple[float, float, float, int]:
    """(wall s, CPU s per wall s, voluntary switches per s, state writes) of one run."""
    cpu0, switches0 = _usage()
    started = time.monotonic()
    writes = run()
    wall = time.monotonic() - started
    cpu1, switches1 = _usage()
    return wall, (cpu1 - cpu0) / wall, (switches1 - switches0) / wall, writes


def prepare_worker(work: Path, steps: list[dict[str, Any]]) -> Callable[[], int]:
    settings = Settings(home=work / "home")
    source = resolve(parse_reference(f"exec:{_wrapper(work)}"), settings.venvs)
    destination = resolve(parse_reference("builtin:destination-devnull"), settings.venvs)
    sync = SyncInput(ConnectorInput(source, {"steps": steps}), ConnectorInput(destination, {}), CATALOG)
    ctx = AttemptContext("bench", 0, work / f"attempt-{time.monotonic_ns()}", settings.lifecycle)
    ctx.workdir.mkdir(parents=True)
    seen = [0]

    def on_state(commit: object) -> None:
        seen[0] += 1

    def run() -> int:
        ReplicationWorker().run(sync, ctx, on_state=on_state)
        return seen[0]

    return run


def prepare_engine(work: Path, steps: list[dict[str, Any]]) -> Callable[[], int]:
    from ferryman.engines.local import LocalEngine
    from ferryman.service import JobService
    from ferryman.store import open_store

    home = work / f"home-{time.monotonic_ns()}"
    store = _CountingStore(open_store(f"sqlite:///{home}.db"))
    settings = Settings(home=home)
    service = JobService(store, settings, LocalEngine(store, settings))  # type: ignore[arg-type]
    source = service.create_actor("source", "quiet", f"exec:{_wrapper(work)}", {})
    service.create_actor("destination", "null", "builtin:destination-devnull", {})
    service.create_connection("quiet", "quiet", "null")
    store.update_actor_config(source.id, {"steps": steps})
    job = service.enqueue_replication("quiet")

    def run() -> int:
        service.run(job)
        return store.writes

    return run


class _CountingStore:
    """The real store, counting save_state calls."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.writes = 0

    def save_state(self, *args: Any, **kwargs: Any) -> None:
        self.writes += 1
        self._inner.save_state(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _wrapper(work: Path) -> Path:
    wrapper = work / "scripted-source"
    if not wrapper.exists():
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {SCRIPTED} "$@"\n')
        wrapper.chmod(0o755)
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds the source sleeps between records")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", nargs="+", default=["worker", "engine"], choices=["worker", "engine"])
    args = parser.parse_args()
    steps = quiet_steps(args.seconds, args.gap)
    prepare = {"worker": prepare_worker, "engine": prepare_engine}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results: dict[str, list[tuple[float, float, float, int]]] = {mode: [] for mode in args.mode}
        for _ in range(args.runs):
            for mode in args.mode:  # interleaved: this shared machine's speed drifts
                results[mode].append(measured(prepare[mode](work, steps)))
    print(f"quiet sync: {len(steps) // 3} records, one every {args.gap:g}s; median of {args.runs} runs")
    print(f"{'mode':8} {'wall s':>7} {'CPU s/s':>8} {'CPU %':>6} {'switches/s':>11} {'state writes':>13}")
    for mode, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        switches = statistics.median(r[2] for r in runs)
        writes = statistics.median(r[3] for r in runs)
        print(f"{mode:8} {wall:7.1f} {cpu:8.4f} {cpu * 100:5.2f}% {switches:11.0f} {writes:13.0f}")


if __name__ == "__main__":
    main()
