"""The longest line the worker reads from a connector's stdout.

A connector that writes without ever ending its line (a binary dump, a bug) would otherwise grow
the worker until the machine kills it, and with it every other job of its process. Airbyte
fails such a sync once the line takes 80% of the JVM's heap; Ferryman at ``FERRYMAN_MAX_LINE_MB``
(256 MiB by default: records of tens of megabytes do occur).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ferryman.errors import ProtocolError

MAX_LINE_BYTES = 256 << 20


class LineTooLong(ProtocolError):
    """A connector's stdout line over the limit; nothing more of that output is read."""

    def __init__(self, max_line: int, who: str) -> None:
        super().__init__(
            f"the {who} sent a line longer than {max_line / (1 << 20):g} MiB (FERRYMAN_MAX_LINE_MB): "
            "it is not read further; raise the limit if its messages are that large"
        )


def lines_of(source: Any, max_line: int, who: str) -> Iterator[bytes]:
    """The lines of ``source`` (a binary file, or any iterable of lines); LineTooLong for one
    longer than ``max_line``, raised before more of it is held."""
    readline = getattr(source, "readline", None)
    if readline is None:
        for line in source:
            if len(line) > max_line:
                raise LineTooLong(max_line, who)
            yield line
        return
    while line := readline(max_line + 1):
        if len(line) > max_line:
            raise LineTooLong(max_line, who)
        yield line
