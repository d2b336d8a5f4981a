"""Spill files: a destination's private files for records it keeps outside the database a while.

destination-duckdb keeps each stream's records between two commits in one (NDJSON, which DuckDB
reads itself); destination-postgres the records of an append or overwrite stream after its last
state (COPY text, sent once a state covers them or the stream completes). Each file lives on the
destination's own disk, and on Linux it is unlinked at once and reached through
``/proc/self/fd``: it disappears with the process, even when the process is killed, so a spill
file never outlives its destination nor reaches the next attempt.

Writing one fails with :class:`SpillError`, which names the directory (a full disk, most often):
each destination adds what its user can do about it (:meth:`SpillError.explained`), except when
the process may open no more files, which no directory fixes.

A spill file holds a descriptor while it exists; a destination closes the file once it is loaded
and empty, so that only streams with records waiting hold one (thousands of streams would
otherwise hold thousands of descriptors for the whole sync).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator

from ferryman.open_files import describe

_CHUNK = 1 << 20


class SpillError(OSError):
    """A spill file could not be created or written: ``reason`` is the system's (``No space left
    on device``); ``message`` replaces the default one (a destination's, saying what to do)."""

    def __init__(
        self, directory: str, reason: str, message: str | None = None, code: int | None = None
    ) -> None:
        super().__init__(message or f"cannot write a spill file in {directory}: {reason}")
        self.directory = directory
        self.reason = reason
        self.code = code  # the errno, when the system gave one

    def explained(self, label: str, what: str, remedy: str) -> SpillError:
        """This error told for stream ``label``: ``what`` could not be done in the directory, and
        ``remedy`` (more room) follows; for too many open files, the limit and how to raise it."""
        if self.code in (errno.EMFILE, errno.ENFILE):
            cause = OSError(self.code, self.reason)
            message = f"stream '{label}': {describe(cause, f'creating a spill file in {self.directory}')}"
        else:
            message = f"stream '{label}': {what} in {self.directory}: {self.reason}; {remedy}"
        return SpillError(self.directory, self.reason, message, self.code)


def directory_problem(directory: str) -> str | None:
    """Why spill files cannot be created in ``directory``, or None when they can (a file is
    created there and removed, so that a read-only mount or missing permission shows)."""
    if not os.path.isdir(directory):
        return "does not exist" if not os.path.exists(directory) else "is not a directory"
    try:
        with tempfile.TemporaryFile(prefix=".ferryman-probe-", dir=directory):
            pass
    except OSError as exc:
        return f"is not writable ({exc.strerror or exc})"
    return None


class Spill:
    """A private file of lines (records), in ``directory`` (None: the temporary directory)."""

    def __init__(self, directory: str | None, suffix: str = ".ndjson") -> None:
        self.directory = directory or tempfile.gettempdir()
        try:
            self.fd, named = tempfile.mkstemp(prefix=".ferryman-spill-", suffix=suffix, dir=self.directory)
        except OSError as exc:
            raise SpillError(self.directory, exc.strerror or str(exc), code=exc.errno) from None
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
        try:
            while offset < len(data):
                offset += os.pwrite(self.fd, view[offset:], self.size + offset)
        except OSError as exc:
            raise SpillError(self.directory, exc.strerror or str(exc), code=exc.errno) from None
        self.size += len(data)
        self.lines += count
        self.longest = max(self.longest, longest)

    def chunks(self) -> Iterator[bytes]:
        """The file's content, in pieces of ~1 MiB (split anywhere, also inside a line)."""
        offset = 0
        while offset < self.size:
            data = os.pread(self.fd, min(self.size - offset, _CHUNK), offset)
            if not data:
                break
            offset += len(data)
            yield data

    def take(self, other: Spill) -> None:
        """Append ``other``'s lines after this one's, and empty ``other``."""
        for data in other.chunks():
            self.append(data, 0, 0)
        self.lines += other.lines
        self.longest = max(self.longest, other.longest)
        other.clear()

    def clear(self) -> None:
        os.ftruncate(self.fd, 0)
        self.size = self.lines = self.longest = 0

    def close(self) -> None:
        os.close(self.fd)
        if self._named is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._named)
