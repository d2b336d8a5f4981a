"""The log of one attempt: ``logs.log`` in the attempt dir, one line per event, side-prefixed.

Connector stderr, LOG messages and non-protocol stdout of both connectors land here next to
the worker's own lines, with every known secret value masked.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from ferryman.private import open_private
from ferryman.secrets import longest_first, mask_head, mask_text

MAX_LINE_CHARS = 64 * 1024


class AttemptLog:
    """Never raises on a write: a full disk must not kill the threads that drain connectors (a
    connector blocks once nobody reads its stderr). Lines that cannot be written are counted in
    ``lost`` with the first ``write_error``; the worker turns them into a failure of the attempt."""

    def __init__(self, path: Path, secrets: list[str] | None = None) -> None:
        self.path = path
        self.lost = 0
        self.write_error: OSError | None = None
        self._fd = -1
        try:
            # 0600 from the first byte: a connector can log what it should not (a secret it does
            # not mark, a record's personal data) in ways masking cannot see.
            self._fd = open_private(path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            self.write_error = exc
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
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
        line = f"{stamp} {side} {level.upper()} {message.rstrip()}\n".encode(errors="replace")
        with self._lock:
            if self._closed:
                return
            if self._fd < 0:
                self.lost += 1
                return
            try:
                # One write per line, as the flush per line did: a reader (`jobs logs --follow`)
                # sees each line whole as soon as it is written.
                os.write(self._fd, line)
            except OSError as exc:
                self.lost += 1
                self.write_error = self.write_error or exc

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
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._fd >= 0:
                    os.close(self._fd)


def decode_line(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")
