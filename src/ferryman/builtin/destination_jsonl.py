"""destination-jsonl: one JSON-lines file per stream.

Config::

    path                  the directory to write to (required; created if missing)
    lock_timeout_seconds  how long to wait for a file another sync writes before failing
                          (default 3600, at most 86400)

Each stream goes to ``<namespace>__<stream>.jsonl`` (``<stream>.jsonl`` without a namespace;
path separators in names become ``_``), one line per record holding the record's ``data`` as
the source wrote it (a lone UTF-16 surrogate escape, ``"\\ud800"``, which msgspec refuses, is
kept as those six characters: the line is JSON that Python's json and Jackson read).

Sync modes:

* ``append`` appends to the file. Records after the stream's last state (a STREAM state for it,
  or any GLOBAL or LEGACY state) are written too, but the size the file had at that state is
  noted durably at each commit in ``<file>.ferryman-committed``, before the state is echoed; a
  sync that ends without the stream completing cuts the file back to it and removes the note, and
  after a kill the next sync writing the file (which resumes from that state) cuts it back first.
  So a retry never stores those records twice.
* ``append_dedup`` is treated as ``append``: a JSON-lines file has no keys to upsert on.
* ``overwrite`` writes into a staging file of the sync's own, ``<file>.ferryman-staging-<sync_id>``
  (``<file>.ferryman-tmp`` for a sync without a ``sync_id``), and renames it over the file only
  when a TRACE ``STREAM_STATUS`` message marks the stream ``COMPLETE`` (sent once the source has
  succeeded). At each commit the size the staging file had at the stream's last state (a STREAM
  state for it, or any GLOBAL or LEGACY state) is written to ``<staging file>.committed``. A sync
  that does not complete keeps the old file as it was and logs a warning; its staging file is cut
  back to that size and left for the sync's next attempt (the same ``sync_id``: the job), which
  resumes from that state and appends to it (after a kill too: it cuts the file back first). A
  staging file of another sync is removed. The rename writes the sync's ``sync_id`` to
  ``<file>.ferryman-sync``: a later attempt of the same sync (the stream completed, then the
  attempt failed) appends to the file instead.

One destination process at a time writes a file: before it opens (or cuts back) any of its
files it locks, for each, one byte of ``.ferryman-jsonl.lock`` in the directory (a POSIX record
lock at an offset hashed from the file's name), in the order of those bytes (so two syncs sharing
several files cannot each wait for the other), and holds them until it exits. Another sync
writing the same file (another connection, an ad-hoc ``ferryman sync``) logs that it waits for
it, waits up to ``lock_timeout_seconds``, and fails after that saying so; syncs writing other
files of the directory go on side by side. The kernel drops the locks with their process, a
killed one too; the lock file stays (empty).

A state is echoed after the records received before it are written and the files fsync'ed.
TRACE messages other than the COMPLETE stream statuses are ignored.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from ferryman.builtin._catalog import ConfiguredStream, StreamKey
from ferryman.builtin._destination import Unfinished, load
from ferryman.builtin._refused import data_text
from ferryman.builtin._runtime import (
    ConfigError,
    Connector,
    Output,
    object_schema,
    require_int,
    require_str,
    run,
)

NAME = "destination-jsonl"
MODES = ("append", "overwrite", "append_dedup")
TMP_SUFFIX = ".ferryman-tmp"  # a staging file of a sync without a sync_id
STAGING_SUFFIX = ".ferryman-staging-"  # then the sync_id: a sync's staging file, its attempts resume
COMMITTED_SUFFIX = ".committed"  # beside a staging file: its size as of the last committed state
SYNC_SUFFIX = ".ferryman-sync"  # beside an overwritten file: the sync_id that put it in place
IN_PLACE_COMMITTED_SUFFIX = ".ferryman-committed"  # beside a file written in place: as COMMITTED_SUFFIX
LOCK_FILE = ".ferryman-jsonl.lock"  # in the directory: a byte of it locked per file being written
LOCK_TIMEOUT_S = 3600
MAX_LOCK_TIMEOUT_S = 86_400  # a sync waiting longer than a day for a lock is stuck, not patient
FIRST_RETRY_S = 0.02
LONGEST_RETRY_S = 1.0


@dataclass(frozen=True)
class JsonlConfig:
    path: str
    lock_timeout_s: int = LOCK_TIMEOUT_S


def parse_config(raw: dict[str, Any]) -> JsonlConfig:
    return JsonlConfig(
        path=os.path.expanduser(require_str(raw, "path")),
        lock_timeout_s=require_int(raw, "lock_timeout_seconds", LOCK_TIMEOUT_S, maximum=MAX_LOCK_TIMEOUT_S),
    )


SPECIFICATION = object_schema(
    {
        "path": {
            "type": "string",
            "minLength": 1,
            "description": "Directory for the files, one per stream.",
        },
        "lock_timeout_seconds": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_LOCK_TIMEOUT_S,
            "default": LOCK_TIMEOUT_S,
            "description": "How long to wait while another sync writes one of the files before failing.",
        },
    },
    required=("path",),
    title="JSON-lines destination",
)


class _Data(msgspec.Struct, gc=False):
    data: msgspec.Raw


class _Record(msgspec.Struct, gc=False):
    record: _Data


_decoder = msgspec.json.Decoder(_Record)


def file_name(stream: ConfiguredStream) -> str:
    def clean(part: str) -> str:
        part = part.replace("/", "_").replace("\\", "_").replace("\0", "_")
        return "_" if part in (".", "..") else part

    if stream.namespace:
        return f"{clean(stream.namespace)}__{clean(stream.name)}.jsonl"
    return f"{clean(stream.name)}.jsonl"


def check(config: JsonlConfig) -> str | None:
    directory = Path(config.path)
    directory.mkdir(parents=True, exist_ok=True)
    probe = directory / f".ferryman-check-{os.getpid()}"
    try:
        probe.write_bytes(b"{}\n")
    finally:
        probe.unlink(missing_ok=True)
    return None


@dataclass
class _File:
    final: Path
    handle: BinaryIO
    replacing: bool  # overwrite mode, not yet renamed over the final file
    lines: list[bytes] = field(default_factory=list)
    dirty: bool = False
    staged: int = 0  # records written to the file by this attempt
    sync_id: int | None = None
    # The file's size and this attempt's records up to the stream's last state (what is past
    # them is held: cut off unless a state covers it or the stream completes); the size the
    # file's committed-size note says (None: there is none); whether the stream completed.
    covered_size: int = 0
    covered: int = 0
    noted: int | None = None
    completed: bool = False

    @property
    def staging(self) -> Path:
        return _staging(self.final, self.sync_id)

    @property
    def committed(self) -> Path:
        """The note of the size the written file had at its last committed state: beside a sync's
        staging file, or beside the final file written in place."""
        if self.replacing:
            return self.staging.with_name(self.staging.name + COMMITTED_SUFFIX)
        return self.final.with_name(self.final.name + IN_PLACE_COMMITTED_SUFFIX)

    @property
    def resumable(self) -> bool:
        """Whether a later writer cuts the file back to its note: any, for the final file (every
        sync resumes from the stream's last state); the sync's next attempt, for its staging."""
        return not self.replacing or self.sync_id is not None

    @property
    def mark(self) -> Path:
        return self.final.with_name(self.final.name + SYNC_SUFFIX)


def _staging(final: Path, sync_id: int | None) -> Path:
    if sync_id is None:
        return final.with_name(final.name + TMP_SUFFIX)
    return final.with_name(f"{final.name}{STAGING_SUFFIX}{sync_id}")


def _open_staging(final: Path, sync_id: int | None) -> tuple[BinaryIO, int]:
    """The stream's staging file, opened to append, and its size. A sync's earlier attempt may
    have left one: it is kept up to what its last committed state covers (the next attempt
    resumes from there); another sync's is removed."""
    for found in final.parent.glob(glob.escape(final.name + STAGING_SUFFIX) + "*"):
        if found.name.endswith(COMMITTED_SUFFIX):
            continue
        if found != _staging(final, sync_id):
            found.unlink(missing_ok=True)
            found.with_name(found.name + COMMITTED_SUFFIX).unlink(missing_ok=True)
    path = _staging(final, sync_id)
    size = 0
    if sync_id is not None:
        try:
            size = int(path.with_name(path.name + COMMITTED_SUFFIX).read_text())
        except (OSError, ValueError):
            size = 0
    return _open_cut(path, size)


def _open_in_place(final: Path) -> tuple[BinaryIO, int, int | None]:
    """The final file, opened to append, its size and its note's. A sync killed while it wrote
    records after a stream's last state left a note of the size the file had at that state: the
    file is cut back to it (every later sync resumes from that state and sends them again)."""
    try:
        noted: int | None = int(final.with_name(final.name + IN_PLACE_COMMITTED_SUFFIX).read_text())
    except (OSError, ValueError):
        noted = None
    handle, size = _open_cut(final, noted)
    return handle, size, None if noted is None else size


def _open_cut(path: Path, size: int | None) -> tuple[BinaryIO, int]:
    """``path`` opened to append, cut back to ``size`` first (None: as it is), and its size."""
    handle = open(path, "ab")  # noqa: SIM115
    if size is not None and size < handle.tell():
        handle.truncate(size)
    handle.seek(0, os.SEEK_END)  # appends go to the end; tell() must say where that is before the first
    return handle, handle.tell()


class LockTimeout(Exception):
    """Another sync wrote one of the files for longer than the destination would wait."""


def _lock_offset(final: Path) -> int:
    """The byte of the lock file that stands for ``final`` (56 bits of its name's hash)."""
    return int.from_bytes(hashlib.sha256(final.name.encode("utf-8", "surrogateescape")).digest()[:7], "big")


def lock_files(
    directory: Path,
    finals: list[Path],
    timeout_s: float,
    on_wait: Callable[[Path], None],
    clock: Callable[[], float] = time.monotonic,
    pause: Callable[[float], None] = time.sleep,
) -> int:
    """Lock each file for writing: one byte per file of ``directory``'s lock file, taken in the
    order of those bytes, waiting up to ``timeout_s`` (in all) while another process holds one.
    ``on_wait`` is called once per file waited for. Returns the descriptor holding the locks:
    closing it (or the process ending, however it ends) releases them."""
    import fcntl  # Unix only, as the rest of the runtime

    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    deadline: float | None = None
    try:
        for offset, final in sorted({_lock_offset(f): f for f in finals}.items()):
            delay, waiting = FIRST_RETRY_S, False
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                    break
                except OSError as exc:  # EAGAIN or EACCES: held by another process
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                now = clock()
                if deadline is None:
                    deadline = now + timeout_s
                if not waiting:
                    waiting = True
                    on_wait(final)
                if now >= deadline:
                    raise LockTimeout(
                        f"gave up after waiting {timeout_s:g}s for {final}, which another sync writes"
                        " (one sync at a time writes a file)"
                    )
                pause(min(delay, deadline - now))
                delay = min(delay * 2, LONGEST_RETRY_S)
    except BaseException:
        os.close(fd)
        raise
    return fd


class JsonlSink:
    def __init__(self, directory: Path, catalog: list[ConfiguredStream]) -> None:
        """Open the streams' files; the caller holds their locks (:func:`lock_files`)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.files: dict[StreamKey, _File] = {}
        for stream in catalog:
            final = directory / file_name(stream)
            if stream.destination_sync_mode == "overwrite" and not _resumed(final, stream.sync_id):
                handle, size = _open_staging(final, stream.sync_id)
                entry = _File(final, handle, replacing=True, sync_id=stream.sync_id, covered_size=size)
                entry.noted = size  # no note reads as 0, the size of a new staging file
            else:
                handle, size, noted = _open_in_place(final)
                entry = _File(final, handle, replacing=False, covered_size=size, noted=noted)
            self.files[stream.key] = entry
        self.buffers = {key: entry.lines for key, entry in self.files.items()}
        self.records = 0
        self.skipped = 0

    def flush(self) -> None:
        for entry in self.files.values():
            self._write(entry)

    def _write(self, entry: _File) -> None:
        if not entry.lines:
            return
        if entry.noted is None:  # a kill from here on leaves a note to cut the file back to
            self._note(entry)
        decode = _decoder.decode
        chunk: list[Any] = []
        for line in entry.lines:
            try:
                chunk.append(decode(line).record.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                data = data_text(line)  # a lone surrogate escape msgspec refuses: kept as written
                if data is None:
                    self.skipped += 1
                else:
                    chunk.append(data)
        chunk.append(b"")
        with _naming(entry):
            entry.handle.write(b"\n".join(chunk))
        entry.dirty = True
        self.records += len(chunk) - 1
        entry.staged += len(chunk) - 1
        entry.lines.clear()

    def storable_line(self, key: StreamKey, line: bytes) -> bytes:
        """As it is: :meth:`_write` writes its data as the source wrote it, escapes and all."""
        return line

    def checkpoint(self, scope: StreamKey | None) -> None:
        # A STREAM state concerns its stream alone: walking every stream for each of them was
        # quadratic for a source of thousands of streams, which sends a state per stream.
        covered = self.files.values() if scope is None else [self.files.get(scope)]
        for entry in covered:
            if entry is not None:
                self._write(entry)
                entry.covered_size, entry.covered = entry.handle.tell(), entry.staged

    def _note(self, entry: _File) -> None:
        """Write, durably, the size the file had at the stream's last state."""
        _write_durably(entry.committed, str(entry.covered_size).encode())
        entry.noted = entry.covered_size

    def commit(self, complete: set[StreamKey]) -> None:
        self.flush()
        renamed = False  # or a note removed: the directory is synced
        for key, entry in self.files.items():
            if key in complete:
                self.checkpoint(key)
            if entry.dirty:
                with _naming(entry):
                    entry.handle.flush()
                    os.fsync(entry.handle.fileno())
                entry.dirty = False
            if key in complete:
                entry.completed = True
                if entry.replacing:
                    os.replace(entry.staging, entry.final)
                    # After the rename, never before: a mark beside the old file would make a
                    # retry add to it.
                    if entry.sync_id is not None:
                        entry.mark.write_text(str(entry.sync_id))
                    else:
                        entry.mark.unlink(missing_ok=True)
                    entry.committed.unlink(missing_ok=True)
                    entry.replacing = False
                    renamed = True
                if entry.committed.exists():  # the final file's: nothing is held any more
                    entry.committed.unlink()
                    renamed = True
                entry.noted = None
            elif entry.resumable and entry.noted not in (None, entry.covered_size):
                self._note(entry)
        if renamed:
            _fsync_directory(self.directory)

    def leave_staged(self) -> dict[StreamKey, Unfinished]:
        left: dict[StreamKey, Unfinished] = {}
        for key, entry in self.files.items():
            if entry.completed:
                continue
            dropped = entry.staged - entry.covered
            if not entry.replacing:  # written in place: cut back to its last state, then no note
                self.records -= dropped
                if dropped:
                    entry.handle.truncate(entry.covered_size)
                    os.fsync(entry.handle.fileno())
                    left[key] = Unfinished(False, 0, dropped)
                if entry.noted is not None:
                    entry.committed.unlink(missing_ok=True)
                continue
            self.records -= entry.staged
            if entry.sync_id is None:
                entry.handle.close()
                entry.staging.unlink(missing_ok=True)
                left[key] = Unfinished(True, 0, entry.staged)
            else:  # what came after the last state is sent again by the next attempt
                entry.handle.truncate(entry.covered_size)
                left[key] = Unfinished(True, entry.covered, dropped)
            entry.replacing = False
        return left

    def abandon(self) -> None:
        """After a failure (a full disk, the worker gone, a signal): cut each file back at once to
        the size its note says was committed, as the next writer would, so that nothing
        uncommitted is left for anyone to read and a full disk gets its space back. A sync's own
        staging files are kept that far for its next attempt; one without a ``sync_id`` goes."""
        for entry in self.files.values():
            if entry.handle.closed or entry.completed:
                continue
            with contextlib.suppress(OSError):
                if entry.replacing and entry.sync_id is None:
                    entry.staging.unlink(missing_ok=True)
                elif entry.noted is not None:
                    fd = entry.handle.fileno()
                    os.ftruncate(fd, entry.noted)
                    os.fsync(fd)
            # What the handle still buffers belongs past the cut: dropped with its descriptor.
            entry.handle.raw.close()  # type: ignore[attr-defined]
            with contextlib.suppress(OSError, ValueError):
                entry.handle.close()

    def close(self) -> None:
        for entry in self.files.values():
            entry.handle.close()


@contextlib.contextmanager
def _naming(entry: _File) -> Iterator[None]:
    """An OSError writing a stream's file names that file (a write or fsync error names none)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(entry.staging if entry.replacing else entry.final)
        raise


def _write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, on disk before this returns."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_directory(path.parent)


def _resumed(final: Path, sync_id: int | None) -> bool:
    """Whether an earlier attempt of this sync (same ``sync_id``: the job) already renamed its
    file over ``final``: its retry resumes the stream from that attempt's last state, so its
    records are added to that file instead of replacing it."""
    if sync_id is None:
        return False
    try:
        return final.exists() and final.with_name(final.name + SYNC_SUFFIX).read_text() == str(sync_id)
    except OSError:
        return False


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _validate(catalog: list[ConfiguredStream]) -> None:
    names: dict[str, str] = {}
    for stream in catalog:
        if stream.destination_sync_mode not in MODES:
            raise ConfigError(
                f"stream '{stream.label}': destination_sync_mode "
                f"'{stream.destination_sync_mode}' is not supported (use one of {', '.join(MODES)})"
            )
        other = names.setdefault(file_name(stream), stream.label)
        if other != stream.label:
            raise ConfigError(f"streams '{other}' and '{stream.label}' would share one file")


def write(config: JsonlConfig, catalog: list[ConfiguredStream], out: Output) -> None:
    _validate(catalog)
    directory = Path(config.path)
    directory.mkdir(parents=True, exist_ok=True)

    def waiting(final: Path) -> None:
        out.log(
            "INFO",
            f"{NAME}: waiting for {final}, which another sync writes (up to {config.lock_timeout_s}s)",
        )
        out.flush()

    # Held until the process ends: cutting a file back, staging and renaming are all done under it.
    locks = lock_files(directory, [directory / file_name(s) for s in catalog], config.lock_timeout_s, waiting)
    try:
        sink = JsonlSink(directory, catalog)
        try:
            load(NAME, sink, out)
        except BaseException:
            sink.abandon()
            raise
        finally:
            sink.close()
    finally:
        os.close(locks)
    if sink.skipped:
        out.log("WARN", f"{NAME}: skipped {sink.skipped} RECORD messages without a data field")
    out.log("INFO", f"{NAME}: wrote {sink.records} records to {len(catalog)} files")


CONNECTOR = Connector(
    name=NAME,
    specification=SPECIFICATION,
    spec_extra={
        "supportsIncremental": True,
        "supported_destination_sync_modes": list(MODES),
    },
    parse_config=parse_config,
    check=check,
    write=write,
)

if __name__ == "__main__":
    run(CONNECTOR)
