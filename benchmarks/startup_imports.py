"""What a command imports before its first connector starts, and the memory that costs.

    python benchmarks/startup_imports.py CONNECTION [--runs 10] [--baseline SRC_DIR]

With ``FERRYMAN_HOME`` set to a home that holds ``CONNECTION`` (see docs/performance.md, e.g.
faker -> DuckDB), it measures, each ``--runs`` times with the baseline (``PYTHONPATH=SRC_DIR``,
e.g. the ``src`` of ``git archive main``) interleaved:

- the import self-time summed by top-level package (``python -X importtime``; medians) of
  ``connections sync CONNECTION --json``, ``jobs list --json`` and ``--help``;
- the VmRSS of ``connections sync CONNECTION --json`` when its first connector process appears
  (sampled every 5 ms; ``docker ps``, which the local engine runs first, is not a connector)
  and its VmHWM as it ends (3 runs);
- the wall time of ``jobs list --json`` and ``--help`` (mean).

Not a test: it asserts nothing. benchmarks/startup.py measures the wall time of the same
commands on a one-record connection.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import time

import psutil

PY = sys.executable
_LINE = re.compile(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)")
_SHOWN = ("sqlalchemy", "ferryman", "pydantic", "typer", "rich", "markdown_it", "yaml", "pygments", "email")


def import_times(args: list[str], env: dict[str, str]) -> collections.Counter[str]:
    """Import self-time in µs per top-level package."""
    done = subprocess.run(
        [PY, "-X", "importtime", "-m", "ferryman", *args], env=env, capture_output=True, text=True
    )
    by: collections.Counter[str] = collections.Counter()
    for line in done.stderr.splitlines():
        match = _LINE.match(line)
        if match:
            by[match[2].split(".")[0]] += int(match[1])
    by["(modules)"] = sum(1 for line in done.stderr.splitlines() if _LINE.match(line))
    return by


def memory_at_first_connector(args: list[str], env: dict[str, str]) -> tuple[int | None, int]:
    """(VmRSS kB when the first connector appeared, VmHWM kB at the end)."""
    proc = subprocess.Popen(
        [PY, "-m", "ferryman", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    parent, at_connector, peak = psutil.Process(proc.pid), None, 0
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as handle:
                status = handle.read()
            rss = int(re.search(r"VmRSS:\s+(\d+)", status)[1])  # type: ignore[index]
            peak = int(re.search(r"VmHWM:\s+(\d+)", status)[1])  # type: ignore[index]
            if at_connector is None:
                for child in parent.children():
                    command = " ".join(child.cmdline())
                    # Not `docker ps`, nor a child forked but not yet exec'd (still our command line).
                    if "docker" not in command and "-m ferryman" not in command:
                        at_connector = rss
                        break
        except (OSError, psutil.Error, TypeError):
            pass  # the process ended between two reads
        time.sleep(0.005)
    return at_connector, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("connection")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline", help="a src/ dir to compare with, run interleaved")
    args = parser.parse_args()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    envs = {"this checkout": env}
    if args.baseline:
        envs = {"baseline": {**env, "PYTHONPATH": os.path.abspath(args.baseline)}, **envs}
    sync = ["connections", "sync", args.connection, "--json"]
    print("| command | code | modules | import ms (median) | " + " | ".join(_SHOWN) + " |")
    print("|---|---|---:|---:|" + "---:|" * len(_SHOWN))
    for command in (sync, ["jobs", "list", "--json"], ["--help"]):
        runs: dict[str, list[collections.Counter[str]]] = {code: [] for code in envs}
        for _ in range(args.runs):
            for code, code_env in envs.items():
                runs[code].append(import_times(command, code_env))
        for code, counters in runs.items():
            total = statistics.median(sum(v for k, v in c.items() if k != "(modules)") for c in counters)
            shown = [statistics.median(c.get(name, 0) for c in counters) / 1000 for name in _SHOWN]
            print(
                f"| `{' '.join(command)}` | {code} | {counters[-1]['(modules)']} | {total / 1000:.0f} | "
                + " | ".join(f"{ms:.0f}" for ms in shown)
                + " |"
            )
    for code, code_env in envs.items():
        memory = [memory_at_first_connector(sync, code_env) for _ in range(3)]
        at = [f"{m[0] / 1024:.1f}" if m[0] else "-" for m in memory]
        print(
            f"{code}: RSS MB at the first connector {at}, VmHWM MB {[f'{m[1] / 1024:.1f}' for m in memory]}"
        )
    for command in (["jobs", "list", "--json"], ["--help"]):
        walls: dict[str, list[float]] = {code: [] for code in envs}
        for _ in range(args.runs):
            for code, code_env in envs.items():
                started = time.perf_counter()
                subprocess.run(
                    [PY, "-m", "ferryman", *command], env=code_env, check=True, capture_output=True
                )
                walls[code].append(time.perf_counter() - started)
        for code, times in walls.items():
            print(
                f"{code}: `{' '.join(command)}` wall mean {statistics.mean(times):.3f} s, "
                f"median {statistics.median(times):.3f}, min {min(times):.3f}"
            )


if __name__ == "__main__":
    main()
