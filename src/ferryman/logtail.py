"""The end of a growing log: its last lines, read from the end of the file, and what is added
to it after them. Attempt logs may be gigabytes and connectors' lines long, so a tail reads
backwards in blocks and stops at a byte limit; a follower polls from the offset the tail ended at.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# What a log's tail holds at most unless a caller asks otherwise: a connector's lines may be 64 kB
# each, and a thousand of them, in a response an API client polls every few seconds, are 64 MB.
TAIL_MAX_BYTES = 1 << 20


def tail_lines(path: Path, count: int, max_bytes: int | None = TAIL_MAX_BYTES) -> tuple[list[str], int]:
    """The last ``count`` complete lines of a file, read from its end (fast on multi-GB logs),
    and the offset just after them, where :func:`follow` picks up without a gap or a repeat.
    No more than ``max_bytes`` is read (None: no limit). The first line then starts where the
    read did (cut, it begins with ``…``)."""
    if not path.exists():
        return [], 0
    with path.open("rb") as handle:
        handle.seek(0, 2)
        end = handle.tell()
        floor = 0 if max_bytes is None else max(0, end - max_bytes)
        block, data, start = 1 << 16, b"", end
        while start > floor and data.count(b"\n") <= count:
            step = max(floor, start - block)
            handle.seek(step)
            data = handle.read(start - step) + data
            start = step
        cut = start > 0 and data.count(b"\n") <= count
        if cut:
            handle.seek(start - 1)
            cut = handle.read(1) != b"\n"  # the read began inside a line
    complete = data[: data.rfind(b"\n") + 1]  # a line still being written is for follow()
    offset = start + len(complete)
    lines = (
        [line.decode("utf-8", errors="replace") for line in complete.splitlines()[-count:]]
        if count > 0
        else []
    )
    if cut and lines and len(complete.splitlines()) <= count:
        lines[0] = "…" + lines[0]
    return lines, offset


def follow(path: Path, stop: Any, start: int | None = None, poll_s: float = 0.25) -> Iterator[str]:
    """New lines of a growing log from ``start`` (default: its end), until ``stop()`` is true and
    nothing more arrives: the log is read once more a poll after ``stop()`` turned true, since
    an attempt's last lines (its end, the job's status) are written just after its end is stored."""
    with path.open("rb") as handle:
        if start is None:
            handle.seek(0, 2)
        else:
            handle.seek(start)
        pending = b""
        stopping = False
        while True:
            chunk = handle.read()
            if chunk:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", errors="replace")
            elif stopping:
                return
            else:
                stopping = stop()
                time.sleep(poll_s)
