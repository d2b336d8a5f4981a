"""The log of one attempt: ``logs.log`` in the attempt dir, one line per event, side-prefixed.

Connector stderr, LOG messages and non-protocol stdout of both connectors land here next to
the worker's own lines, with every known secret value masked.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TextIO

from ferryman.secrets import mask_text

MAX_LINE_CHARS = 64 * 1024


class AttemptLog:
    def __init__(self, path: Path, secrets: list[str] | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: TextIO = open(path, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        self._lock = threading.Lock()
        self._secrets = list(secrets or [])
        self._closed = False

    def write_bytes(self, side: str, level: str, raw: bytes) -> None:
        """A line as a connector wrote it: invalid UTF-8 replaced, cut at MAX_LINE_CHARS."""
        raw = raw.rstrip(b"\r\n")
        if len(raw) > MAX_LINE_CHARS:
            cut = len(raw) - MAX_LINE_CHARS
            self.write(side, level, f"{decode_line(raw[:MAX_LINE_CHARS])}... ({cut} more bytes not logged)")
        else:
            self.write(side, level, decode_line(raw))

    def write(self, side: str, level: str, message: str) -> None:
        if len(message) > MAX_LINE_CHARS + 64:
            cut = len(message) - MAX_LINE_CHARS
            message = f"{message[:MAX_LINE_CHARS]}... ({cut} more characters not logged)"
        if self._secrets:
            message = mask_text(message, self._secrets)
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"
        line = f"{stamp} {side} {level.upper()} {message.rstrip()}\n"
        with self._lock:
            if not self._closed:
                self._file.write(line)
                self._file.flush()

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
                self._file.close()


def decode_line(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")
