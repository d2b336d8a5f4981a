"""Who owns destination-duckdb's ``overwrite`` staging tables: a ``flock`` on a small file each.

A destination that stages an overwrite holds an exclusive ``flock`` on a file next to the
database file (``<database>.ferryman-staging-<16 hex>.lock``, the hex a SHA-256 of the schema
and the staging table's name) for as long as it uses the staging table: from before the table
is created until it is swapped in or dropped, or the process ends (the kernel lets go then,
however it ends). Another destination that finds the table tries the lock without waiting: taken,
the owner is gone; refused, a live process on this host owns it, in whatever container or pid
namespace, since the database's directory is the same file system for all of them. A pid told
none of that: each container counts its pids from 1, so a live writer in another container looked
dead, and a pid reused by an unrelated process looked alive.

Lock files are created, taken, and removed only while the destination holds the database file
open (DuckDB lets one process at a time have it): so no one takes a lock file in the moment
another removes it. A file is removed once its table is swapped in or dropped, or when the
table never came to be (the first commit failed). A table left for the job's next attempt keeps
its file; the attempt that takes the table over removes it.

Staging tables named by earlier versions (``_<pid>`` or ``_<pid>_s<sync_id>`` after the stream)
have no lock file: for those the pid still decides, as it did (:func:`pid_alive`). So does it for
this version's tables where the lock file cannot be made or ``flock`` refuses (a file system
without locks): the table is then given such a name, and the sync logs a warning. Not when the
process may open no more files: that fails the sync, naming the limit (``ferryman.open_files``).

Each lock holds a descriptor for as long as its table is staged, so an overwrite of thousands of
streams holds thousands: the destination raises its soft limit of open files at start-up.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import hashlib
import os
from pathlib import Path

LOCK_EX, LOCK_NB, LOCK_UN = 2, 4, 8  # fcntl's values, which exists only on Unix
_SUFFIX = ".lock"


class Owner(enum.Enum):
    GONE = "gone"  # its lock file could be locked: this process holds it now
    LIVE = "live"  # another process holds the lock
    UNKNOWN = "unknown"  # no lock file (an earlier version's table), or no flock to ask


def _flock(fd: int, operation: int) -> None:
    import fcntl  # Unix only: an ImportError elsewhere counts as a file system without locks

    fcntl.flock(fd, operation)


class StagingLocks:
    """The staging-table locks of one destination process, on one database file."""

    def __init__(self, database: str) -> None:
        self.database = Path(database)
        self._held: dict[tuple[str, str], tuple[Path, int]] = {}

    def path(self, schema: str, name: str) -> Path:
        digest = hashlib.sha256(f"{schema}\0{name}".encode()).hexdigest()[:16]
        return self.database.with_name(f"{self.database.name}.ferryman-staging-{digest}{_SUFFIX}")

    def own(self, schema: str, name: str) -> str | None:
        """Create and lock the file of a staging table this process is about to create; None when
        it is ours now, else why not (another live process holds it, or no lock can be made)."""
        if (schema, name) in self._held:
            return None
        path = self.path(schema, name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                raise  # not a file system without locks: the sync fails saying which limit
            return f"cannot create {path}: {exc.strerror or exc}"
        try:
            _flock(fd, LOCK_EX | LOCK_NB)
        except (ImportError, OSError) as exc:
            os.close(fd)
            if isinstance(exc, OSError) and exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return f"{path} is held by another process"
            with contextlib.suppress(OSError):  # ours (the name is new) and of no use
                path.unlink()
            return f"cannot lock {path}: {getattr(exc, 'strerror', None) or exc}"
        # For whoever finds the file: which table it guards (the name hashes it), and who held it.
        os.ftruncate(fd, 0)
        os.write(fd, f"{schema}.{name}\npid {os.getpid()} on {os.uname().nodename}\n".encode())
        self._held[(schema, name)] = (path, fd)
        return None

    def owner(self, schema: str, name: str) -> Owner:
        """Whether the staging table's owner is gone (then this process holds its lock until
        :meth:`release`), alive, or cannot be told by a lock."""
        if (schema, name) in self._held:
            return Owner.GONE
        path = self.path(schema, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # flock needs no write access
        except OSError:
            return Owner.UNKNOWN
        try:
            _flock(fd, LOCK_EX | LOCK_NB)
        except (ImportError, OSError) as exc:
            os.close(fd)
            blocked = isinstance(exc, OSError) and exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
            return Owner.LIVE if blocked else Owner.UNKNOWN
        self._held[(schema, name)] = (path, fd)
        return Owner.GONE

    def release(self, schema: str, name: str) -> None:
        """The table is gone (swapped in, dropped, renamed, or never committed): remove its file,
        then let go of the lock. Call it while the database file is open (see above)."""
        held = self._held.pop((schema, name), None)
        if held is None:
            return
        path, fd = held
        with contextlib.suppress(OSError):  # a directory no longer writable: the file stays, unlocked
            path.unlink(missing_ok=True)
        os.close(fd)

    def close(self) -> None:
        """Let go of every lock (the process is done with its staging tables); the files stay, so
        the job's next attempt can tell its tables from ones nobody ever locked."""
        for _path, fd in self._held.values():
            os.close(fd)
        self._held.clear()


def pid_alive(pid: int) -> bool:
    """Whether a process (not a thread) has this pid, in this pid namespace: how earlier versions
    told a live owner, kept for their staging tables (named by pid, without lock files).

    kill(2) takes a thread's id too, and in a container, whose pids count from 1 again in each
    run, the retry's own DuckDB threads hold the pid its failed attempt had: that attempt's
    staging table was taken for a live writer's and left, and an empty one replaced the table.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # it exists, and belongs to someone else
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False  # it ended meanwhile
    except OSError:
        return True  # no /proc to tell a thread from a process: kill(2) said it exists
    tgid = next((line.split()[1] for line in status.splitlines() if line.startswith("Tgid:")), None)
    return tgid is None or tgid == str(pid)
