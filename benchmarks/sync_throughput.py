"""Sync throughput: `ferryman sync` against the same two connector processes piped directly.

    python benchmarks/sync_throughput.py [--records 1000000 10000000] [--runs 5] [--record-size 450]
                                         [--destination devnull|jsonl|duckdb] [--launcher local|docker]

source-bench -> destination-devnull (or destination-jsonl, which parses every record as a real
destination does, or destination-duckdb, which loads them into a table), ~450-byte records, one
stream. The direct pipe gets the same
1 MiB pipe Ferryman uses, so the ratio measures only what the worker in the middle costs. Prints
the median of each figure over the runs (direct and ferryman runs interleaved, since this shared
machine's speed drifts): records/s, MB/s, the ratio, worker CPU per message and worker peak RSS.
Not a test: it asserts nothing and prints figures for docs/performance.md.

With ``--launcher docker`` both connectors run as the test images of ``tests/images`` (built
when missing; ``python tests/images/build.py`` builds them ahead). Ferryman gets
``docker:<image>`` references, and the direct pipe becomes two ``docker run --rm --init -i``
clients piped into each other with the options Ferryman's launcher passes (``--log-driver
none``, ``--user``), the temporary workdir bind-mounted at its own path so the config, catalog
and jsonl output paths are the same inside. Both use ``--network none`` (the ferryman run via
``FERRYMAN_DOCKER_NETWORK``); the ferryman run's destination-jsonl writes to ``/local/out``, its
``FERRYMAN_DOCKER_LOCAL_ROOT`` being a temporary dir. Docker mode also prints dockerd's CPU per
message and the start overhead: the median duration of a 1-record ``ferryman sync`` with docker
(Ferryman's default network, host) against local, for the sync itself and for the whole command,
which also runs discover. ``--network none`` would add ~0.08 s per container here (a netns).
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
ROOT = Path(__file__).resolve().parents[1]
NETWORK = "none"  # the containers need none; the ferryman run gets it through FERRYMAN_DOCKER_NETWORK


class Connectors:
    """source-bench and one destination, as local processes or as containers of the test images."""

    def __init__(
        self,
        launcher: str,
        destination: str,
        images: dict[str, str],
        workdir: Path,
        network: str | None = NETWORK,  # None: Ferryman's own default (host)
    ) -> None:
        self.launcher, self.destination, self.images, self.workdir = launcher, destination, images, workdir
        self.network = network

    def direct(self, name: str, *args: str) -> list[str]:
        """The argv of one side of the direct pipe (name: source-bench, destination-devnull...)."""
        if self.launcher == "local":
            return [PY, "-m", f"ferryman.builtin.{name.replace('-', '_')}", *args]
        mount = f"{self.workdir}:{self.workdir}"
        return [
            "docker", "run", "--rm", "--init", "-i", "--log-driver", "none", "--network", NETWORK,
            "--user", f"{os.getuid()}:{os.getgid()}", "-v", mount, self.images[name], *args,
        ]  # fmt: skip

    def ref(self, name: str) -> str:
        return f"builtin:{name}" if self.launcher == "local" else f"docker:{self.images[name]}"

    def ferryman_env(self) -> dict[str, str]:
        env = {**os.environ, "FERRYMAN_HOME": str(self.workdir / "home")}
        if self.launcher == "docker":
            env["FERRYMAN_DOCKER_LOCAL_ROOT"] = str(self.workdir / "local")
            if self.network:
                env["FERRYMAN_DOCKER_NETWORK"] = self.network
        return env


def docker_images(destination: str) -> dict[str, str]:
    """Test image name -> reference, building what is missing; one line and exit when that fails."""
    names = ("source-bench", f"destination-{destination}")
    sys.path.insert(0, str(ROOT))
    from tests.images import build  # here: only docker runs need it

    try:
        return build.ensure(*names)
    except build.BuildError as error:
        raise SystemExit(
            f"docker images: {error} (`python tests/images/build.py {' '.join(names)}` builds them)"
        ) from None


def _destination_config(destination: str, out: Path) -> dict[str, str]:
    return {"jsonl": {"path": str(out)}, "duckdb": {"path": str(out / "bench.duckdb")}}.get(destination, {})


def _setup(workdir: Path, records: int, record_size: int, destination: str) -> tuple[Path, Path, Path, Path]:
    source_config = workdir / "source.json"
    source_config.write_text(json.dumps({"count": records, "record_size": record_size, "streams": 1}))
    discovered = subprocess.run(
        [PY, "-m", "ferryman.builtin.source_bench", "discover", "--config", str(source_config)],
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
    destination_config.write_text(json.dumps(_destination_config(destination, workdir / "out")))
    # A docker: destination of `ferryman sync` sees only the attempt dir and /local.
    ferryman_destination_config = workdir / "destination-ferryman.json"
    ferryman_destination_config.write_text(json.dumps(_destination_config(destination, Path("/local/out"))))
    return source_config, catalog_file, destination_config, ferryman_destination_config


def _dockerd_cpu_s() -> float | None:
    """CPU seconds dockerd has used so far; None when it is not found."""
    try:
        with open("/var/run/docker.pid") as handle:
            pid = handle.read().strip()
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _dockerd_delta(before: float | None) -> float:
    after = _dockerd_cpu_s()
    return float("nan") if before is None or after is None else after - before


def run_direct(connectors: Connectors, source_config: Path, catalog: Path, destination_config: Path) -> dict:
    read_fd, write_fd = os.pipe()
    enlarge_pipe(read_fd)
    dockerd = _dockerd_cpu_s()
    started = time.perf_counter()
    source = subprocess.Popen(
        connectors.direct("source-bench", "read", "--config", str(source_config), "--catalog", str(catalog)),
        stdout=write_fd,
    )
    destination = subprocess.Popen(
        connectors.direct(
            f"destination-{connectors.destination}",
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
    return {"seconds": time.perf_counter() - started, "dockerd_s": _dockerd_delta(dockerd)}


def run_ferryman(connectors: Connectors, source_config: Path, destination_config: Path) -> dict:
    command = [
        PY, "-m", "ferryman", "sync", "--json", "--full-refresh",
        "--source", connectors.ref("source-bench"), "--source-config", str(source_config),
        "--destination", connectors.ref(f"destination-{connectors.destination}"),
        "--destination-config", str(destination_config),
    ]  # fmt: skip
    dockerd = _dockerd_cpu_s()
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, env=connectors.ferryman_env())
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"ferryman sync failed: {result.stderr.decode()[-2000:]}")
    summary = json.loads(result.stdout)
    return {
        "seconds": (summary["ended_at_ms"] - summary["started_at_ms"]) / 1000,
        "wall": wall,
        "records": summary["records_emitted"],
        "bytes": summary["bytes_emitted"],
        "cpu_s": summary["worker"]["cpu_s"],
        "rss_mb": summary["worker"]["peak_rss_bytes"] / 2**20,
        "dockerd_s": _dockerd_delta(dockerd),
    }


def measure(
    records: int, runs: int, record_size: int, destination: str, launcher: str, images: dict[str, str]
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as tmp:
        workdir = Path(tmp)
        connectors = Connectors(launcher, destination, images, workdir)
        source_config, catalog, destination_config, ferryman_config = _setup(
            workdir, records, record_size, destination
        )
        direct, through = [], []
        for _ in range(runs):
            direct.append(run_direct(connectors, source_config, catalog, destination_config))
            through.append(run_ferryman(connectors, source_config, ferryman_config))
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
        "dockerd_direct_us": statistics.median(r["dockerd_s"] for r in direct) / records * 1e6,
        "dockerd_ferryman_us": statistics.median(r["dockerd_s"] for r in through) / records * 1e6,
    }


def start_overhead(runs: int, destination: str, images: dict[str, str]) -> dict[str, float]:
    """Median seconds of a 1-record `ferryman sync`, local and docker, runs interleaved."""
    times: dict[str, list[float]] = {"local": [], "docker": [], "local_wall": [], "docker_wall": []}
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as tmp:
        workdir = Path(tmp)
        source_config, _, _, ferryman_config = _setup(workdir, 1, 450, destination)
        configs = {"local": workdir / "destination.json", "docker": ferryman_config}
        for _ in range(runs):
            for launcher, destination_config in configs.items():
                connectors = Connectors(launcher, destination, images, workdir, network=None)
                result = run_ferryman(connectors, source_config, destination_config)
                times[launcher].append(result["seconds"])
                times[f"{launcher}_wall"].append(result["wall"])
    return {key: statistics.median(values) for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record-size", type=int, default=450)
    parser.add_argument("--destination", choices=["devnull", "jsonl", "duckdb"], default="devnull")
    parser.add_argument("--launcher", choices=["local", "docker"], default="local")
    args = parser.parse_args()
    docker = args.launcher == "docker"
    images = docker_images(args.destination) if docker else {}
    cpus, version = os.cpu_count(), platform.python_version()
    print(f"# source-bench -> destination-{args.destination}, {args.launcher} launcher")
    print(f"# {platform.node()}: {cpus} CPUs, Python {version}, median of {args.runs} runs")
    if docker:
        engine = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True
        )
        print(f"# dockerd {engine.stdout.strip()}, images {', '.join(images.values())}")
    columns = ["records", "B/record", "direct rec/s", "direct MB/s", "ferryman rec/s", "ferryman MB/s"]
    columns += ["ratio", "worker CPU us/msg", "worker peak RSS MB"]
    columns += ["dockerd CPU us/msg direct", "dockerd CPU us/msg ferryman"] if docker else []
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for records in args.records:
        r = measure(records, args.runs, args.record_size, args.destination, args.launcher, images)
        line = (
            f"| {records:,} | {r['bytes_per_record']:.0f} | {r['direct_rps']:,.0f} | {r['direct_mbps']:,.0f} "
            f"| {r['ferryman_rps']:,.0f} | {r['ferryman_mbps']:,.0f} | {r['ratio']:.1%} "
            f"| {r['cpu_us_per_msg']:.2f} | {r['rss_mb']:.1f} |"
        )
        if docker:
            line += f" {r['dockerd_direct_us']:.2f} | {r['dockerd_ferryman_us']:.2f} |"
        print(line, flush=True)
    if docker:
        o = start_overhead(args.runs, args.destination, images)
        print(
            f"# start overhead, 1-record `ferryman sync`: sync {o['local']:.2f} s local, {o['docker']:.2f} s "
            f"docker (+{o['docker'] - o['local']:.2f} s); whole command {o['local_wall']:.2f} s local, "
            f"{o['docker_wall']:.2f} s docker (+{o['docker_wall'] - o['local_wall']:.2f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
