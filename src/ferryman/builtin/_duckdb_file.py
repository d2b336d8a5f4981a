"""The two files behind destination-duckdb: the shared database and a private spill file per stream.

DuckDB lets one process at a time open a database file for writing, and every connection of
the README's setup shares one file. So the destination opens the database only to commit, and
keeps what it receives in between in spill files of its own. :func:`open_database` waits for a
file another process holds, with backoff, up to a time limit; ``on_wait`` is called once, when
the wait begins, so the user learns why a sync stands still.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

FIRST_RETRY_S = 0.02
LONGEST_RETRY_S = 1.0


class LockTimeout(Exception):
    """Another process held the database file for longer than the destination would wait."""


def connect(path: str) -> duckdb.DuckDBPyConnection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # A commit syncs only the write-ahead log; the costlier checkpoint (compressing what was
    # loaded into the database file) runs when the connection closes, after each commit. Spill
    # files are rewritten under the same name for every commit: never cache them.
    return duckdb.connect(path, config={"checkpoint_threshold": "1GB", "enable_external_file_cache": False})


def is_lock_conflict(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and "Could not set lock on file" in str(exc)


def open_database(
    path: str,
    timeout_s: float,
    on_wait: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> duckdb.DuckDBPyConnection:
    """Connect to ``path``, waiting up to ``timeout_s`` while another process holds it."""
    deadline: float | None = None
    delay = FIRST_RETRY_S
    while True:
        try:
            return connect(path)
        except duckdb.Error as exc:
            if not is_lock_conflict(exc):
                raise
            now = clock()
            if deadline is None:
                deadline = now + timeout_s
                on_wait(str(exc))
            if now >= deadline:
                raise LockTimeout(
                    f"gave up after waiting {timeout_s:g}s for {path}, which another process holds"
                    f" (DuckDB allows one writer at a time): {exc}"
                ) from exc
            pause(min(delay, deadline - now))
            delay = min(delay * 2, LONGEST_RETRY_S)


class Spill:
    """A private NDJSON file for one stream's records between two commits.

    Created in ``directory`` (next to the database, on the disk the data goes to). On Linux it
    is unlinked at once and read through ``/proc/self/fd``, so it disappears with the process
    even when the process is killed.
    """

    def __init__(self, directory: str) -> None:
        self.fd, named = tempfile.mkstemp(prefix=".ferryman-spill-", suffix=".ndjson", dir=directory)
        self.path = f"/proc/self/fd/{self.fd}"
        self.size = 0
        self.lines = 0
        self.longest = 0
        if os.path.exists(self.path):
            os.unlink(named)
            self._named: str | None = None
        else:
            self.path = self._named = named

    def append(self, data: bytes, count: int, longest: int) -> None:
        """Add ``count`` lines (each ending with a newline) whose longest is ``longest`` bytes."""
        view, offset = memoryview(data), 0
        while offset < len(data):
            offset += os.pwrite(self.fd, view[offset:], self.size + offset)
        self.size += len(data)
        self.lines += count
        self.longest = max(self.longest, longest)

    def clear(self) -> None:
        os.ftruncate(self.fd, 0)
        self.size = self.lines = self.longest = 0

    def close(self) -> None:
        os.close(self.fd)
        if self._named is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._named)
