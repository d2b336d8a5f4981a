"""CPU per message of the record path alone, in this process, without pipes or connectors.

    python benchmarks/record_path.py [--records 1000000] [--runs 5] [--record-size 450]

Generates source-bench output once (to a temporary file, so it sits in the page cache), then
runs ``ferryman.workers.record_path.forward`` from that file into /dev/null and prints the
median thread CPU per message, for the C extension's scan (when it is built) and the Python
loop, runs interleaved. Compare with ``sync_throughput.py``: the difference is what the
pipes, the other threads and sharing two cores with the connectors cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ferryman.protocol.catalog import NamespaceMapping, configure_catalog
from ferryman.workers.record_path import SCANNER, Scanner, forward
from ferryman.workers.tracker import MessageTracker, StreamKey


class _Handler:
    def source_state(self, line: bytes) -> bytes:
        return line

    def source_message(self, line: bytes) -> None:
        pass

    def not_a_message(self, line: bytes) -> None:
        pass

    def unknown_stream(self, key: StreamKey) -> None:
        pass


def _generate(workdir: Path, records: int, record_size: int) -> Path:
    config = workdir / "config.json"
    config.write_text(json.dumps({"count": records, "record_size": record_size}))
    command = [sys.executable, "-m", "ferryman.builtin.source_bench"]
    discovered = subprocess.run(
        [*command, "discover", "--config", str(config)], capture_output=True, check=True
    )
    catalog = next(
        json.loads(line)["catalog"] for line in discovered.stdout.splitlines() if b"CATALOG" in line
    )
    catalog_file = workdir / "catalog.json"
    catalog_file.write_text(json.dumps(configure_catalog(catalog, prefer_incremental=False)))
    data = workdir / "source.jsonl"
    with data.open("wb") as out:
        subprocess.run(
            [*command, "read", "--config", str(config), "--catalog", str(catalog_file)],
            stdout=out,
            check=True,
        )
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--record-size", type=int, default=450, help="bytes per RECORD line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as tmp:
        data = _generate(Path(tmp), args.records, args.record_size)
        implementations: dict[str, Scanner | None] = {"python": None}
        if SCANNER is not None:
            implementations["c extension"] = SCANNER
        cpu: dict[str, list[float]] = {name: [] for name in implementations}
        for _ in range(args.runs):
            for name, scanner in implementations.items():
                tracker = MessageTracker([("stream_0", None)])
                with (
                    data.open("rb", buffering=1 << 20) as source,
                    open("/dev/null", "wb", buffering=1 << 20) as sink,
                ):
                    started = time.thread_time()
                    forward(source, sink, tracker, _Handler(), NamespaceMapping(), scanner)
                    cpu[name].append(time.thread_time() - started)
                assert tracker.emitted[("stream_0", None)][0] == args.records
    for name, times in cpu.items():
        print(f"record path, {name}: {statistics.median(times) / args.records * 1e6:.3f} us CPU per message "
              f"(median of {args.runs}, {args.records:,} records of ~{args.record_size} bytes)")  # fmt: skip


if __name__ == "__main__":
    main()
