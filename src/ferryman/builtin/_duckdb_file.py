"""The shared database file behind destination-duckdb (its spill files: :mod:`ferryman.builtin._spill`).

DuckDB lets one process at a time open a database file for writing, and every connection of
the README's setup shares one file. So the destination keeps what it receives between commits
in spill files of its own, and holds the database open only while nobody else wants it.

:func:`open_database` waits for a file another process holds, with backoff, up to a time limit;
``on_wait`` is called once, when the wait begins, so the user learns why a sync stands still.
While it waits it holds a shared ``flock`` on the file's directory: that is how the holder, a
:class:`SharedFile`, learns after each commit that someone waits, and closes the database.
(Closing after every commit instead costs a checkpoint each time, a quarter of the loading
time in the benchmark.) A holder also closes it whenever its input has been quiet for a while,
for the processes that cannot say they wait (a DuckDB shell). ``flock`` on the directory
leaves no file behind and cannot disturb DuckDB's own ``fcntl`` lock on the database file;
where it fails, the holder closes after every commit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

FIRST_RETRY_S = 0.02
LONGEST_RETRY_S = 1.0
LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN = 1, 2, 4, 8  # fcntl's values, which exists only on Unix


class LockTimeout(Exception):
    """Another process held the database file for longer than the destination would wait."""


def connect(path: str) -> duckdb.DuckDBPyConnection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # A commit syncs the write-ahead log; the checkpoint (compressing what was loaded into the
    # database file) runs once the log passes 8 MB, and when the connection closes. With the
    # whole load left to the close (a threshold of 1 GB, as before), a source-bound sync waited
    # ~0.2 s after its last record for the checkpoint of 200k records; done on the way, that work
    # overlaps the source (bulk loads of source-bench: 5-10% fewer records/s; docs/performance.md).
    # Spill files are rewritten under the same name for every commit: never cache them.
    # Timestamps without an offset are read as UTC, whatever the host's zone.
    config: dict[str, str | bool | int | float | list[str]] = {
        "checkpoint_threshold": "8MB",
        "enable_external_file_cache": False,
    }
    con = duckdb.connect(path, config=config)
    con.execute("SET TimeZone = 'UTC'")  # not in config: the ICU extension loads only after connect
    return con


def is_lock_conflict(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and "Could not set lock on file" in str(exc)


def _directory_fd(path: str) -> int | None:
    try:
        return os.open(Path(path).parent, os.O_RDONLY)
    except OSError:
        return None


def _flock(fd: int | None, operation: int) -> bool:
    """``flock``, reporting whether it took the lock (False also where flock is missing)."""
    if fd is None:
        return False
    try:
        import fcntl

        fcntl.flock(fd, operation)
    except (ImportError, OSError):
        return False
    return True


def open_database(
    path: str,
    timeout_s: float,
    on_wait: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> duckdb.DuckDBPyConnection:
    """Connect to ``path``, waiting up to ``timeout_s`` while another process holds it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    signal = _directory_fd(path)
    try:
        return _connect_waiting(path, timeout_s, on_wait, clock, pause, signal)
    finally:
        if signal is not None:
            os.close(signal)  # drops the shared flock too


def _connect_waiting(
    path: str,
    timeout_s: float,
    on_wait: Callable[[str], None],
    clock: Callable[[], float],
    pause: Callable[[float], None],
    signal: int | None,
) -> duckdb.DuckDBPyConnection:
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
                _flock(signal, LOCK_SH)
                on_wait(str(exc))
            if now >= deadline:
                raise LockTimeout(
                    f"gave up after waiting {timeout_s:g}s for {path}, which another process holds"
                    f" (DuckDB allows one writer at a time): {exc}"
                ) from exc
            pause(min(delay, deadline - now))
            delay = min(delay * 2, LONGEST_RETRY_S)


class SharedFile:
    """The database, held open across commits until another process waits for it."""

    def __init__(self, path: str, timeout_s: float, on_wait: Callable[[str], None]) -> None:
        self.path, self.timeout_s, self.on_wait = path, timeout_s, on_wait
        self._con: duckdb.DuckDBPyConnection | None = None
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._signal = _directory_fd(path)

    def connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = open_database(self.path, self.timeout_s, self.on_wait)
        return self._con

    def others_wait(self) -> bool:
        if not _flock(self._signal, LOCK_EX | LOCK_NB):
            return True
        _flock(self._signal, LOCK_UN)
        return False

    def offer(self) -> None:
        """After a commit: let go of the database if another process waits for it."""
        if self._con is not None and self.others_wait():
            self.let_go()

    def let_go(self) -> None:
        """Close the database (its checkpoint runs now); the next commit opens it again."""
        con, self._con = self._con, None
        if con is not None:
            con.close()

    def close(self) -> None:
        self.let_go()
        if self._signal is not None:
            os.close(self._signal)
            self._signal = None
