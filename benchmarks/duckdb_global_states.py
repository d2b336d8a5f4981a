"""destination-duckdb under a CDC-like source: GLOBAL states over many streams (session 27).

    python benchmarks/duckdb_global_states.py [--streams 2000] [--touched 500] [--rounds 3]
                                              [--mode append] [--before /path/to/older/src]

``--streams`` streams of one shape (an integer key and a string). Round 0 sends one record to
every stream and a GLOBAL state, and waits for its echo (the first commit creates the tables);
each later round sends one record to each of ``--touched`` streams and a GLOBAL state, and
waits for its echo. Prints, per build, the first commit's time and the median time from a later
state sent to its echo, per stream. ``--before`` names an older checkout's ``src`` directory,
put first on PYTHONPATH; the builds run one after the other. Wall time: note the machine's load.
Not a test; prints figures for docs/performance.md.
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
from pathlib import Path


def _record(i: int, n: int) -> str:
    data = {"id": n, "v": "x" * 20}
    return json.dumps(
        {"type": "RECORD", "record": {"stream": f"s{i}", "data": data, "emitted_at": 1_700_000_000_000}}
    )


def _global(n: int) -> str:
    body = {"shared_state": {"lsn": n}, "stream_states": []}
    return json.dumps({"type": "STATE", "state": {"type": "GLOBAL", "global": body}})


def run(args: argparse.Namespace, src: str | None) -> tuple[float, list[float]]:
    properties = {"id": {"type": "integer"}, "v": {"type": "string"}}
    streams = [
        {
            "stream": {
                "name": f"s{i}",
                "json_schema": {"type": "object", "properties": properties},
                "supported_sync_modes": ["full_refresh", "incremental"],
                "source_defined_primary_key": [["id"]],
            },
            "sync_mode": "incremental",
            "destination_sync_mode": args.mode,
            "primary_key": [["id"]],
            "sync_id": 1,
        }
        for i in range(args.streams)
    ]
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as tmp:
        catalog, config = Path(tmp, "catalog.json"), Path(tmp, "config.json")
        catalog.write_text(json.dumps({"streams": streams}))
        config.write_text(json.dumps({"path": str(Path(tmp, "db.duckdb"))}))
        env = {**os.environ, "PYTHONPATH": src} if src else None
        argv = [sys.executable, "-m", "ferryman.builtin.destination_duckdb", "write"]
        argv += ["--config", str(config), "--catalog", str(catalog)]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert proc.stdin is not None and proc.stdout is not None

        def echo_after(lines: list[str]) -> float:
            started = time.monotonic()
            proc.stdin.write(("\n".join(lines) + "\n").encode())  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            while b'"STATE"' not in proc.stdout.readline():  # type: ignore[union-attr]
                pass
            return time.monotonic() - started

        first = echo_after([*(_record(i, 0) for i in range(args.streams)), _global(0)])
        step = max(1, args.streams // args.touched)
        later = [
            echo_after(
                [*(_record((j * step + r) % args.streams, r) for j in range(args.touched)), _global(r)]
            )
            for r in range(1, args.rounds + 1)
        ]
        proc.communicate()  # the end of the input, and what the destination says then
    return first, later


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--touched", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", default="append", choices=["append", "overwrite", "append_dedup"])
    parser.add_argument("--before", help="an older checkout's src directory")
    args = parser.parse_args()
    builds = [("before", args.before), ("now", None)] if args.before else [("now", None)]
    for name, src in builds:
        first, later = run(args, src)
        median = statistics.median(later)
        print(
            f"{name}: {args.streams} streams ({args.mode}), first commit {first:.1f} s; a GLOBAL state"
            f" over {args.touched} streams: {median * 1000:.0f} ms ({median * 1000 / args.touched:.1f} ms per"
            f" stream), rounds {[round(s, 2) for s in later]}; load {os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
