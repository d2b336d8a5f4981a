"""The log of one attempt: ``logs.log`` in the attempt dir, one line per event, side-prefixed.

Connector stderr, LOG messages and non-protocol stdout of both connectors land here next to
the worker's own lines, with every known secret value masked.

A connector that writes without end (a debug level in a loop, a broken one) must not fill the
disk the store and every other job's log live on, so the log of an attempt has a limit
(``FERRYMAN_MAX_ATTEMPT_LOG_MB``). Up to it, lines are written as they come. Past it, the
connectors' lines are kept only in a ring of the last few (``TAIL_KEEP_*``), written with one note
of what was left out when the connectors are done (:meth:`AttemptLog.flush_tail`); the worker's
and the platform's own lines (a stop, a failure, the attempt's end) are still written at once.
Nothing is stopped for logging too much: the sync goes on as before.

The ring is also on disk, in ``logs.log.tail`` beside the log: each line is appended to it as it
comes, and the file is rewritten with the ring alone once it holds twice the ring's size. A worker
killed with SIGKILL (or a power cut) never writes its ring; the engine that recovers its attempt
moves the file's last lines to the log (:func:`recover_tail`), so the connectors' last words,
the ones that tell why a job died, are not lost with the process.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path

from ferryman.private import open_private
from ferryman.secrets import longest_first, mask_head, mask_text

MAX_LINE_CHARS = 64 * 1024
# Sides whose lines are ours, not a connector's: written even past the limit.
OWN_SIDES = frozenset({"worker", "platform"})
# Past the limit: the connectors' last lines kept (in memory) to end the log with; few enough
# that the note before them shows in the tails a job page and the API serve (1,000 lines) ...
TAIL_KEEP_LINES = 500
TAIL_KEEP_BYTES = 1 << 20
# ... and how far our own lines may take the log beyond it. Our lines are few (a stop, a
# failure), but some repeat once per thing a connector does (a stream not in the catalog).
OWN_RESERVE_BYTES = 1 << 20
TAIL_SUFFIX = ".tail"  # logs.log.tail: the ring, on disk, while it is not written to the log


def tail_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + TAIL_SUFFIX)


class AttemptLog:
    """Never raises on a write: a full disk must not kill the threads that drain connectors (a
    connector blocks once nobody reads its stderr). Lines that cannot be written are counted in
    ``lost`` with the first ``write_error``; the worker turns them into a failure of the attempt."""

    def __init__(self, path: Path, secrets: list[str] | None = None, limit_bytes: int = 0) -> None:
        """``limit_bytes``: the size past which connector lines are left out (0: no limit)."""
        self.path = path
        self.lost = 0
        self.write_error: OSError | None = None
        self._fd = -1
        self._size = 0
        try:
            # 0600 from the first byte: a connector can log what it should not (a secret it does
            # not mark, a record's personal data) in ways masking cannot see.
            self._fd = open_private(path, os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size  # an attempt's earlier lines count too
        except OSError as exc:
            self.write_error = exc
        self._limit = limit_bytes
        self._tail_keep = min(TAIL_KEEP_BYTES, limit_bytes // 4)
        self._capped = False  # the head is full: connector lines go to the tail ring
        self._tail: deque[bytes] = deque()
        self._tail_bytes = 0
        self._own_past_limit = 0
        self._tail_fd = -1  # logs.log.tail, open while the ring holds lines
        self._tail_file_bytes = 0
        self.left_out_lines = 0  # connector lines dropped for the limit (not counted as lost)
        self.left_out_bytes = 0
        self._noted = (0, 0)  # what the notes written so far told of
        self._lock = threading.Lock()
        self._secrets = list(secrets or [])
        self._closed = False

    def add_secrets(self, values: list[str]) -> None:
        """Mask these values too from now on (a config the connector updated holds them)."""
        with self._lock:
            self._secrets = longest_first([*self._secrets, *values])

    def write_bytes(self, side: str, level: str, raw: bytes, left_out: int = 0) -> None:
        """A line as a connector wrote it: invalid UTF-8 replaced, cut at MAX_LINE_CHARS.
        ``left_out``: bytes of the line the caller read past and dropped already."""
        raw = raw.rstrip(b"\r\n")
        if len(raw) > MAX_LINE_CHARS or left_out:
            cut = len(raw) - MAX_LINE_CHARS + left_out
            # What follows the cut is decoded too (up to a bound): a secret may run through it.
            kept = self.head(decode_line(raw[: 2 * MAX_LINE_CHARS]), len(decode_line(raw[:MAX_LINE_CHARS])))
            self._append(side, level, f"{kept}... ({cut} more bytes not logged)")
        else:
            self.write(side, level, decode_line(raw))

    def write(self, side: str, level: str, message: str) -> None:
        if len(message) > MAX_LINE_CHARS + 64:
            cut = len(message) - MAX_LINE_CHARS
            message = f"{self.head(message, MAX_LINE_CHARS)}... ({cut} more characters not logged)"
        elif self._secrets:
            message = mask_text(message, self._secrets)
        self._append(side, level, message)

    def head(self, text: str, keep: int) -> str:
        """The first ``keep`` characters of ``text``, masked as this log masks (before the cut,
        not after: a secret the cut runs through would show its start)."""
        return mask_head(text, keep, self._secrets) if self._secrets else text[:keep]

    def _append(self, side: str, level: str, message: str) -> None:
        if "\x00" in message:  # a NUL makes tools take the whole log for a binary file
            message = message.replace("\x00", "\ufffd")
        line = f"{_stamp()} {side} {level.upper()} {message.rstrip()}\n".encode(errors="replace")
        with self._lock:
            if self._closed:
                return
            if self._limit and (self._capped or self._size + len(line) > self._limit - self._tail_keep):
                self._past_limit(side, line)
            else:
                self._put(line)

    def _put(self, line: bytes) -> None:
        if self._fd < 0:
            self.lost += 1
            return
        try:
            # One write per line, as the flush per line did: a reader (`jobs logs --follow`)
            # sees each line whole as soon as it is written.
            os.write(self._fd, line)
            self._size += len(line)
        except OSError as exc:
            self.lost += 1
            self.write_error = self.write_error or exc

    def _past_limit(self, side: str, line: bytes) -> None:
        if not self._capped:
            self._capped = True
            self._put(
                self._own_line(
                    f"this log reached its limit of {self._limit / (1 << 20):g} MiB "
                    "(FERRYMAN_MAX_ATTEMPT_LOG_MB): the connectors' lines are left out from here "
                    "on, but for their last ones, written when they are done; the sync goes on"
                )
            )
        if side in OWN_SIDES and self._own_past_limit + len(line) <= OWN_RESERVE_BYTES:
            self._own_past_limit += len(line)
            self._put(line)
            return
        self._tail.append(line)
        self._tail_bytes += len(line)
        while self._tail_bytes > self._tail_keep or len(self._tail) > TAIL_KEEP_LINES:
            dropped = self._tail.popleft()
            self._tail_bytes -= len(dropped)
            self.left_out_lines += 1
            self.left_out_bytes += len(dropped)
        self._keep_on_disk(line)

    def _keep_on_disk(self, line: bytes) -> None:
        """Append ``line`` to the ring's file; past twice the ring's size, rewrite the file with
        the ring alone (written aside, then renamed over: a kill mid-way leaves one whole file).
        A failure only costs that copy: the ring in memory is still written at the end."""
        try:
            if self._tail_fd >= 0 and self._tail_file_bytes + len(line) <= 2 * self._tail_keep:
                os.write(self._tail_fd, line)
                self._tail_file_bytes += len(line)
                return
            self._drop_tail_fd()
            path = tail_path(self.path)
            aside = path.with_name(path.name + ".new")
            fd = open_private(aside, os.O_WRONLY | os.O_TRUNC)
            ring = b"".join(self._tail)
            try:
                os.write(fd, ring)
                os.replace(aside, path)
            except OSError:
                os.close(fd)
                raise
            self._tail_fd, self._tail_file_bytes = fd, len(ring)
        except OSError:
            self._drop_tail_fd()

    def _drop_tail_fd(self) -> None:
        if self._tail_fd >= 0:
            os.close(self._tail_fd)
            self._tail_fd = -1

    def flush_tail(self) -> None:
        """Write the last lines kept past the limit, after one note of how much was left out
        (the worker calls this once the connectors are done, so their last lines come before
        its own about their exit; closing the log does it too)."""
        with self._lock:
            if self._closed or not self._tail:
                return
            left_out = (self.left_out_lines, self.left_out_bytes)
            if left_out != self._noted:
                lines, size = left_out[0] - self._noted[0], left_out[1] - self._noted[1]
                self._put(
                    self._own_line(
                        f"{lines} line(s) ({size} bytes) of connector output left out of this log "
                        f"(FERRYMAN_MAX_ATTEMPT_LOG_MB); the last {len(self._tail)} follow"
                    )
                )
                self._noted = left_out
            self._put(b"".join(self._tail))
            self._tail.clear()
            self._tail_bytes = 0
            self._drop_tail_fd()
            tail_path(self.path).unlink(missing_ok=True)  # written to the log now

    @staticmethod
    def _own_line(message: str) -> bytes:
        return f"{_stamp()} worker WARN {message}\n".encode()

    def lost_lines(self) -> str | None:
        """Why lines are missing from this log (for the attempt's failure), or None if none are."""
        if not self.lost:
            return None
        why = (
            (self.write_error.strerror or str(self.write_error)).lower()
            if self.write_error
            else "write failed"
        )
        return f"{why} while writing the attempt log {self.path}: {self.lost} line(s) lost"

    def info(self, side: str, message: str) -> None:
        self.write(side, "INFO", message)

    def warn(self, side: str, message: str) -> None:
        self.write(side, "WARN", message)

    def error(self, side: str, message: str) -> None:
        self.write(side, "ERROR", message)

    def close(self) -> None:
        self.flush_tail()
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._fd >= 0:
                    os.close(self._fd)


_second: tuple[int, str] = (-1, "")  # the last second formatted: strftime costs more than a line


def recover_tail(log_path: Path) -> bool:
    """Move the ring a killed worker left in ``logs.log.tail`` to the end of ``log_path``, after
    one note (its last ``TAIL_KEEP_LINES`` lines and ``TAIL_KEEP_BYTES`` at most, as the worker
    would have written them). Returns whether there was one. Lines in it are masked already."""
    path = tail_path(log_path)
    try:
        kept = path.read_bytes()
    except OSError:  # none (the usual case), or unreadable: nothing to move
        return False
    lines = kept.splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        lines.pop()  # a line cut by the kill, mid-write
    lines = lines[-TAIL_KEEP_LINES:]
    while lines and sum(map(len, lines)) > TAIL_KEEP_BYTES:
        lines.pop(0)
    if lines:
        note = AttemptLog._own_line(
            "the worker ended before writing the connectors' last lines (this log had reached "
            f"FERRYMAN_MAX_ATTEMPT_LOG_MB); the last {len(lines)} it kept follow"
        )
        fd = open_private(log_path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, note + b"".join(lines))
        finally:
            os.close(fd)
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".new").unlink(missing_ok=True)
    return True


def _stamp() -> str:
    global _second
    now_ms = int(time.time() * 1000)
    second, text = _second
    if second != now_ms // 1000:
        second = now_ms // 1000
        text = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        _second = (second, text)
    return f"{text}.{now_ms % 1000:03d}"


def decode_line(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")
