"""destination-devnull: discards every record and echoes every state at once.

Config: any object (``{}`` will do). It reads stdin into one reused 1 MiB buffer and only
looks for ``"STATE"`` in it; each line holding that marker is decoded, and echoed (then stdout
flushed) when it really is a STATE message. Records are never split into lines or decoded;
every other message, TRACE included (stream statuses or any other trace type), is discarded
like a record, even when it holds the marker. Having nothing to replace, it needs no COMPLETE
status. It measures how fast the rest of a pipeline can go.
"""

from __future__ import annotations

import os
from typing import Any

from ferryman.builtin._catalog import ConfiguredStream
from ferryman.builtin._destination import grow_pipe
from ferryman.builtin._runtime import BUFFER_SIZE, Connector, Output, object_schema, run
from ferryman.protocol.codec import decode_envelope

NAME = "destination-devnull"
MARKER = b'"STATE"'

SPECIFICATION = object_schema({}, title="Null destination")


def parse_config(raw: dict[str, Any]) -> dict[str, Any]:
    return raw


def check(config: dict[str, Any]) -> str | None:
    return None


class _StateFinder:
    """Echoes the STATE lines of a stream of bytes read in arbitrary pieces."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.echoed = 0

    def line(self, line: bytes | bytearray) -> None:
        if MARKER in line:
            line = bytes(line)
            envelope = decode_envelope(line)
            if envelope is not None and envelope.type == "STATE":
                self.out.state(line)
                self.echoed += 1

    def region(self, data: bytearray, start: int, stop: int) -> None:
        """Check the complete lines in ``data[start:stop]``; only marked ones are looked at."""
        position = data.find(MARKER, start, stop)
        while position >= 0:
            newline = data.rfind(b"\n", start, position)
            begin = start if newline < 0 else newline + 1
            end = data.find(b"\n", position, stop)
            end = stop if end < 0 else end
            self.line(data[begin:end])
            position = data.find(MARKER, end, stop)


def discard(fd: int, out: Output, buffer_size: int = BUFFER_SIZE) -> tuple[int, int]:
    """Read ``fd`` to its end; returns (bytes read, states echoed)."""
    buffer = bytearray(buffer_size)
    view = memoryview(buffer)
    finder = _StateFinder(out)
    carry = bytearray()  # the unfinished last line of the previous read
    total = 0
    while True:
        size = os.readv(fd, [view])
        if size == 0:
            break
        total += size
        first = buffer.find(b"\n", 0, size)
        if first < 0:
            carry.extend(view[:size])
            continue
        finder.line(carry + buffer[:first])
        last = buffer.rfind(b"\n", 0, size)
        if last > first:
            finder.region(buffer, first + 1, last)
        carry = bytearray(view[last + 1 : size])
    finder.line(carry)
    return total, finder.echoed


def write(config: dict[str, Any], catalog: list[ConfiguredStream], out: Output) -> None:
    grow_pipe(0)
    total, states = discard(0, out)
    out.log("INFO", f"{NAME}: discarded {total} bytes, echoed {states} states")


CONNECTOR = Connector(
    name=NAME,
    specification=SPECIFICATION,
    spec_extra={
        "supportsIncremental": True,
        "supported_destination_sync_modes": ["append", "overwrite", "append_dedup"],
    },
    parse_config=parse_config,
    check=check,
    write=write,
)

if __name__ == "__main__":
    run(CONNECTOR)
