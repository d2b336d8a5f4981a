"""Destination throughput: builtin:source-bench piped into each built-in SQL destination.

    python benchmarks/destinations.py [--records 1000000] [--destinations duckdb postgres]
                                      [--modes append append_dedup] [--state-every 10000]
                                      [--pg-admin-url postgresql://postgres@127.0.0.1:5432/test]

For every destination and mode: a fresh target (a new DuckDB file, a new PostgreSQL database made
through the admin URL and dropped afterwards), then ``source-bench read | destination write``
with a 1 MiB pipe, timed from the start of both processes to the destination's exit, so the
figure includes the last commit. Each append_dedup run is followed by a second, identical one
into the same table ("dedup again": every record replaces a stored row). ~450-byte records with
three typed columns (id BIGINT, name and payload text). Prints records/s and MB/s (MB of
RECORD/STATE lines the source wrote). Not a test: it asserts only that every record arrived, and
prints figures for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from ferryman.launchers.base import make_pipe

PY = sys.executable


def _builtin(name: str, *args: str | Path) -> list[str]:
    return [PY, "-m", f"ferryman.builtin.{name}", *map(str, args)]


def _catalog(workdir: Path, source_config: Path, mode: str) -> Path:
    found = subprocess.run(
        _builtin("source_bench", "discover", "--config", source_config), capture_output=True
    )
    streams = next(json.loads(line)["catalog"]["streams"] for line in found.stdout.splitlines())
    path = workdir / f"catalog-{mode}.json"
    configured = [{"stream": s, "sync_mode": "incremental", "destination_sync_mode": mode} for s in streams]
    path.write_text(json.dumps({"streams": configured}))
    return path


def _source_bytes(source_config: Path, catalog: Path) -> int:
    """How many bytes the source writes for this config (a dry run, counted)."""
    proc = subprocess.Popen(
        _builtin("source_bench", "read", "--config", source_config, "--catalog", catalog),
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    total = 0
    while chunk := proc.stdout.read(1 << 20):
        total += len(chunk)
    proc.wait()
    return total


def _pipe(source: list[str], destination: list[str]) -> tuple[float, bytes]:
    """Run source | destination; seconds until both exited, and the destination's stdout."""
    read_fd, write_fd = make_pipe()
    start = time.perf_counter()
    src = subprocess.Popen(source, stdout=write_fd)
    dst = subprocess.Popen(destination, stdin=read_fd, stdout=subprocess.PIPE)
    os.close(read_fd)
    os.close(write_fd)
    out, _ = dst.communicate()
    src.wait()
    elapsed = time.perf_counter() - start
    if src.returncode or dst.returncode:
        raise SystemExit(f"failed: source {src.returncode}, destination {dst.returncode}: {out[-2000:]!r}")
    return elapsed, out


class Postgres:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def __enter__(self) -> dict[str, Any]:
        self.name = f"ferryman_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        info = psycopg.conninfo.conninfo_to_dict(self.admin_url)
        return {
            "host": info.get("host", "127.0.0.1"),
            "port": int(info.get("port", 5432)),
            "database": self.name,
            "username": info.get("user", "postgres"),
            "ssl_mode": "disable",
        }

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-dest-") as tmp:
        workdir = Path(tmp)
        source_config = workdir / "source.json"
        source_config.write_text(
            json.dumps({"count": args.records, "streams": 1, "state_every": args.state_every})
        )
        catalogs = {mode: _catalog(workdir, source_config, mode) for mode in args.modes}
        size = _source_bytes(source_config, catalogs[args.modes[0]])
        print(f"{args.records:,} records, {size / 1e6:,.0f} MB of messages, state every {args.state_every:,}")
        print(f"{'destination':<22}{'mode':<28}{'seconds':>9}{'records/s':>12}{'MB/s':>8}")
        for destination in args.destinations:
            for mode in args.modes:
                runs = ["first"] + (["dedup again"] if mode == "append_dedup" else [])
                if destination == "duckdb":
                    target: Any = _DuckDB(workdir / f"{mode}.duckdb")
                else:
                    target = Postgres(args.pg_admin_url)
                with target as config:
                    config_path = workdir / f"{destination}-{mode}.json"
                    config_path.write_text(json.dumps(config))
                    for label in runs:
                        seconds, out = _pipe(
                            _builtin(
                                "source_bench", "read", "--config", source_config, "--catalog", catalogs[mode]
                            ),
                            _builtin(
                                f"destination_{destination}",
                                "write",
                                "--config",
                                config_path,
                                "--catalog",
                                catalogs[mode],
                            ),
                        )
                        if f"loaded {args.records} records".encode() not in out:
                            raise SystemExit(
                                f"{destination} {mode}: not every record was loaded: {out[-1000:]!r}"
                            )
                        name = mode if label == "first" else f"{mode} ({label})"
                        print(
                            f"{'destination-' + destination:<22}{name:<28}{seconds:>9.1f}"
                            f"{args.records / seconds:>12,.0f}{size / 1e6 / seconds:>8.1f}",
                            flush=True,
                        )


class _DuckDB:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--destinations", nargs="+", choices=["duckdb", "postgres"], default=["duckdb", "postgres"]
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["append", "append_dedup", "overwrite"],
        default=["append", "append_dedup"],
    )
    parser.add_argument("--state-every", type=int, default=10_000)
    parser.add_argument("--pg-admin-url", default="postgresql://postgres@127.0.0.1:5432/test")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
