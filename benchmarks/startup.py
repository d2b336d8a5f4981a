"""Start-up cost of the commands a user types most: wall time and what they import.

    python benchmarks/startup.py [--runs 10] [--baseline SRC_DIR]

Runs ``ferryman --help``, ``ferryman jobs list`` (on an up-to-date SQLite store),
``ferryman connections sync NAME`` (the foreground sync of a configured 1-record connection,
source-bench -> destination-devnull) and the ad hoc ``ferryman sync`` of the same pair, each
``--runs`` times in turn, and prints the median wall time, then, from one run under
``python -X importtime``, how many modules the command imported, their summed import time and
which heavy packages among them it did not need. ``--baseline`` runs every command a second
time, interleaved, with ``PYTHONPATH=SRC_DIR`` (e.g. the ``src`` of ``git archive main``), so a
before and after are measured in the same batch. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PY = sys.executable
HEAVY = (
    "alembic", "duckdb", "fastapi", "uvicorn", "starlette", "jinja2", "prometheus_client",
    "temporalio", "httpx", "croniter", "sqlalchemy", "pydantic", "psycopg",
)  # fmt: skip
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)")


def _setup(workdir: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    env = {**os.environ, "FERRYMAN_HOME": str(workdir / "home")}
    (workdir / "source.json").write_text(json.dumps({"count": 1}))
    (workdir / "destination.json").write_text("{}")
    ferryman = [PY, "-m", "ferryman"]
    setup = [
        [*ferryman, "sources", "create", "bench", "--connector", "builtin:source-bench",
         "--config", str(workdir / "source.json")],
        [*ferryman, "destinations", "create", "null", "--connector", "builtin:destination-devnull",
         "--config", str(workdir / "destination.json")],
        [*ferryman, "connections", "create", "bench-null", "--source", "bench", "--destination", "null"],
    ]  # fmt: skip
    for command in setup:
        subprocess.run(command, env=env, check=True, capture_output=True)
    adhoc = ["--source", "builtin:source-bench", "--source-config", str(workdir / "source.json")]
    adhoc += [
        "--destination",
        "builtin:destination-devnull",
        "--destination-config",
        str(workdir / "destination.json"),
    ]
    commands = {
        "ferryman --help": [*ferryman, "--help"],
        "ferryman jobs list": [*ferryman, "jobs", "list"],
        "ferryman connections sync bench-null": [*ferryman, "connections", "sync", "bench-null"],
        "ferryman sync (ad hoc)": [*ferryman, "sync", *adhoc],
    }
    return commands, env


def _imports(command: list[str], env: dict[str, str]) -> tuple[int, float, list[str]]:
    done = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]], env=env, capture_output=True, text=True
    )
    names, total_us = [], 0
    for line in done.stderr.splitlines():
        match = _LINE.match(line)
        if match:
            total_us += int(match[1])
            names.append(match[3])
    heavy = sorted({name.split(".")[0] for name in names} & set(HEAVY))
    return len(names), total_us / 1000, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline", type=Path, help="a src/ dir to compare with, run interleaved")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferryman-startup-") as tmp:
        commands, env = _setup(Path(tmp))
        envs = {"this checkout": env}
        if args.baseline:
            envs = {"baseline": {**env, "PYTHONPATH": str(args.baseline.resolve())}, **envs}
        walls: dict[tuple[str, str], list[float]] = {(n, c): [] for n in commands for c in envs}
        for _ in range(args.runs):
            for name, command in commands.items():
                for code, code_env in envs.items():
                    started = time.perf_counter()
                    subprocess.run(command, env=code_env, check=True, capture_output=True)
                    walls[name, code].append(time.perf_counter() - started)
        print(f"# median of {args.runs} runs each, interleaved; imports from one -X importtime run")
        print(
            "| command | code | wall s (median) | min | modules | import time ms | heavy packages imported |"
        )
        print("|---|---|---:|---:|---:|---:|---|")
        for name, command in commands.items():
            for code, code_env in envs.items():
                count, import_ms, heavy = _imports(command, code_env)
                times = walls[name, code]
                print(
                    f"| `{name}` | {code} | {statistics.median(times):.3f} | {min(times):.3f} | {count} "
                    f"| {import_ms:.0f} | {', '.join(heavy) or '-'} |"
                )


if __name__ == "__main__":
    main()
