"""Files and folders only their owner can read: the store, attempt logs and configs, the home.

Modes are given when a file or folder is created (``os.open``/``os.mkdir`` with 0600/0700), so
nothing is readable by others even for a moment, whatever the umask. The process umask is left
alone: it is process-wide, changing it is not thread-safe, and connectors inherit it, so it
would also change the modes of files they write for the user (a DuckDB file, a CSV export).

What an older Ferryman left readable is tightened when it is opened: the home (see
:func:`secure_home`), the SQLite store and its -wal/-shm files, and an attempt log written to
again. Only what the current user owns is changed; a failure to change it is not an error
(another user's file, a read-only mount): the file is used as it is.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dirs(path: Path) -> Path:
    """``mkdir -p`` where every folder it creates is 0700; existing ones are left as they are."""
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:  # another process made it first: its mode is its maker's
            continue
        os.chmod(folder, DIR_MODE)  # a umask that takes the owner's bits (0o700+) is undone
    if missing and not path.is_dir():
        raise NotADirectoryError(f"not a folder: {path}")
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` of a file that is 0600 from its first byte; an existing one is tightened."""
    private_dirs(path.parent)
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    _tighten(fd, FILE_MODE)  # never raises: fstat of an open fd, and fchmod's errors ignored
    return fd


def create_private_file(path: Path) -> None:
    """Make ``path`` an (empty, if new) 0600 file, or tighten the existing one."""
    os.close(open_private(path, os.O_RDONLY))


def tighten(path: Path, mode: int = FILE_MODE) -> None:
    """Take group and other permissions off an existing file or folder of ours, if it has any."""
    try:
        info = path.stat()
    except OSError:
        return
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
        with contextlib.suppress(OSError):
            os.chmod(path, stat.S_IMODE(info.st_mode) & mode)


def secure_home(home: Path) -> Path:
    """The Ferryman home, made 0700: created so, or tightened when it is ours and open to others.

    Everything under it (store, logs, configs, caches, venvs, DuckDB files kept there) is then
    out of reach of other users, including files written before modes were set on each file."""
    private_dirs(home)
    tighten(home, DIR_MODE)
    return home


def _tighten(fd: int, mode: int) -> None:
    info = os.fstat(fd)
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & ~mode:
        with contextlib.suppress(OSError):
            os.fchmod(fd, stat.S_IMODE(info.st_mode) & mode)
