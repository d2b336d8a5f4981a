"""Nanoseconds per record of the C scan alone (``ferryman.workers._scan.scan_records``).

    python benchmarks/scan_records.py [--reps 30] [--also OTHER_BUILD.so ...]

Two kinds of compact RECORD line, 5,000 of each in an ``mmap`` buffer as the worker reads them:
``long``, one 400-byte ASCII string (source-bench's shape), and ``faker``, many short strings,
numbers, literals and some UTF-8 (airbyte-source-faker's shape). Prints the best of ``--reps``
timings of 10 scans each. ``--also`` loads other builds of the module (for example main's,
built into another directory) and interleaves their runs with this one's, so that both see the
same load on a shared host.
"""

from __future__ import annotations

import argparse
import importlib.util
import mmap
import time
from collections.abc import Callable

HEAD = b'{"type":"RECORD","record":{"stream":"stream_0","data":{'
KINDS = {
    "long": HEAD + b'"id":1,"name":"record-1","payload":"' + b"abcdefghij" * 40 + b'"},"emitted_at":1}}\n',
    "faker": HEAD
    + '"id":7,"name":"Émile Zoë","email":"a@b.c","age":31,"address":{"city":"Köln","zip":"50667"},'
    '"tags":["x","y"],"score":1.5e3,"ok":true,"none":null},"emitted_at":1}}\n'.encode(),
}
LINES = 5000


def _load(path: str) -> Callable[..., int]:
    spec = importlib.util.spec_from_file_location("ferryman.workers._scan", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.scan_records  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--also", nargs="*", default=[], help="other builds of _scan.so to compare")
    args = parser.parse_args()
    from ferryman.workers._scan import scan_records

    scans = {"this build": scan_records, **{path: _load(path) for path in args.also}}
    for kind, line in KINDS.items():
        data = line * LINES
        buffer = mmap.mmap(-1, len(data))
        buffer[:] = data
        best = dict.fromkeys(scans, float("inf"))
        for _ in range(args.reps):
            for name, scan in scans.items():
                heads = {HEAD: [0, 0]}
                start = time.perf_counter()
                for _ in range(10):
                    scan(buffer, 0, len(data), heads, 1900)
                best[name] = min(best[name], (time.perf_counter() - start) / 10 / LINES * 1e9)
                assert heads[HEAD][0] == 10 * LINES, "the scan did not take every line"
        for name, ns in best.items():
            print(f"{kind:5} ({len(line)} bytes): {ns:6.1f} ns/record  {name}")


if __name__ == "__main__":
    main()
