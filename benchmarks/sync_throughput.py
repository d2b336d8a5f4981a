"""Sync throughput: `ferryman sync` against the same two connector processes piped directly.

    python benchmarks/sync_throughput.py [--records 1000000 10000000] [--runs 5] [--record-size 450]
                                         [--destination devnull|jsonl]

source-bench -> destination-devnull (or destination-jsonl, which parses every record as a real
destination does), ~450-byte records, one stream. The direct pipe gets the same
1 MiB pipe Ferryman uses, so the ratio measures only what the worker in the middle costs. Prints
the median of each figure over the runs (direct and ferryman runs interleaved, since this shared
machine's speed drifts): records/s, MB/s, the ratio, worker CPU per message and worker peak RSS.
Not a test: it asserts nothing and prints figures for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ferryman.launchers.base import enlarge_pipe

PY = sys.executable


def _connector(module: str, *args: str) -> list[str]:
    return [PY, "-m", f"ferryman.builtin.{module}", *args]


def _setup(workdir: Path, records: int, record_size: int, destination: str) -> tuple[Path, Path, Path]:
    source_config = workdir / "source.json"
    source_config.write_text(json.dumps({"count": records, "record_size": record_size, "streams": 1}))
    discovered = subprocess.run(
        _connector("source_bench", "discover", "--config", str(source_config)),
        capture_output=True,
        check=True,
    )
    catalog = next(
        json.loads(line)["catalog"] for line in discovered.stdout.splitlines() if b'"CATALOG"' in line
    )
    configured = {
        "streams": [
            {"stream": s, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}
            for s in catalog["streams"]
        ]
    }
    catalog_file = workdir / "catalog.json"
    catalog_file.write_text(json.dumps(configured))
    destination_config = workdir / "destination.json"
    destination_config.write_text(
        json.dumps({"path": str(workdir / "out")} if destination == "jsonl" else {})
    )
    return source_config, catalog_file, destination_config


def run_direct(
    source_config: Path, catalog: Path, destination_config: Path, dest_name: str
) -> dict[str, float]:
    read_fd, write_fd = os.pipe()
    enlarge_pipe(read_fd)
    started = time.perf_counter()
    source = subprocess.Popen(
        _connector("source_bench", "read", "--config", str(source_config), "--catalog", str(catalog)),
        stdout=write_fd,
    )
    destination = subprocess.Popen(
        _connector(
            f"destination_{dest_name}",
            "write",
            "--config",
            str(destination_config),
            "--catalog",
            str(catalog),
        ),
        stdin=read_fd,
        stdout=subprocess.DEVNULL,
    )
    os.close(read_fd)
    os.close(write_fd)
    if source.wait() != 0 or destination.wait() != 0:
        raise SystemExit("the direct pipe failed")
    return {"seconds": time.perf_counter() - started}


def run_ferryman(
    source_config: Path, catalog: Path, destination_config: Path, dest_name: str, home: Path
) -> dict[str, float]:
    del catalog  # ferryman discovers and configures the catalog itself
    command = [
        PY, "-m", "ferryman", "sync", "--json", "--full-refresh",
        "--source", "builtin:source-bench", "--source-config", str(source_config),
        "--destination", f"builtin:destination-{dest_name}",
        "--destination-config", str(destination_config),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, env={**os.environ, "FERRYMAN_HOME": str(home)})
    if result.returncode != 0:
        raise SystemExit(f"ferryman sync failed: {result.stderr.decode()[-2000:]}")
    summary = json.loads(result.stdout)
    return {
        "seconds": (summary["ended_at_ms"] - summary["started_at_ms"]) / 1000,
        "records": summary["records_emitted"],
        "bytes": summary["bytes_emitted"],
        "cpu_s": summary["worker"]["cpu_s"],
        "rss_mb": summary["worker"]["peak_rss_bytes"] / 2**20,
    }


def measure(records: int, runs: int, record_size: int, destination: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as tmp:
        workdir = Path(tmp)
        files = _setup(workdir, records, record_size, destination)
        direct, through = [], []
        for _ in range(runs):
            direct.append(run_direct(*files, destination))
            through.append(run_ferryman(*files, destination, home=workdir / "home"))
    d_s = statistics.median(r["seconds"] for r in direct)
    f_s = statistics.median(r["seconds"] for r in through)
    total_bytes = through[0]["bytes"]
    assert through[0]["records"] == records, through[0]
    return {
        "records": records,
        "bytes_per_record": total_bytes / records,
        "direct_rps": records / d_s,
        "direct_mbps": total_bytes / d_s / 1e6,
        "ferryman_rps": records / f_s,
        "ferryman_mbps": total_bytes / f_s / 1e6,
        "ratio": d_s / f_s,
        "cpu_us_per_msg": statistics.median(r["cpu_s"] for r in through) / records * 1e6,
        "rss_mb": statistics.median(r["rss_mb"] for r in through),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record-size", type=int, default=450)
    parser.add_argument("--destination", choices=["devnull", "jsonl"], default="devnull")
    args = parser.parse_args()
    cpus, version = os.cpu_count(), platform.python_version()
    print(f"# source-bench -> destination-{args.destination}")
    print(f"# {platform.node()}: {cpus} CPUs, Python {version}, median of {args.runs} runs")
    columns = ["records", "B/record", "direct rec/s", "direct MB/s", "ferryman rec/s", "ferryman MB/s"]
    columns += ["ratio", "worker CPU us/msg", "worker peak RSS MB"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for records in args.records:
        r = measure(records, args.runs, args.record_size, args.destination)
        print(
            f"| {records:,} | {r['bytes_per_record']:.0f} | {r['direct_rps']:,.0f} | {r['direct_mbps']:,.0f} "
            f"| {r['ferryman_rps']:,.0f} | {r['ferryman_mbps']:,.0f} | {r['ratio']:.1%} "
            f"| {r['cpu_us_per_msg']:.2f} | {r['rss_mb']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
