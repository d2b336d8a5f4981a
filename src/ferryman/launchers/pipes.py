"""The read ends of a connector's stdout and stderr, which end when the connector is gone.

A pipe reports its end only once every process holding its write end has closed it. A connector
that starts a child in a session of its own (``setsid``, a daemon) lets that child keep its
stdout: the process-group kill does not reach another session, and without more the worker would
wait for that child (minutes, or for ever) although the connector exited long ago.

So the read end is non-blocking, and a read that finds nothing waits in ``poll`` in short slices.
Once the launcher says the connector has exited and its group was killed (:meth:`owner_gone`),
what is in the pipe is still read to the last byte; only a pipe that then stays silent for
``LEFTOVER_DRAIN_S`` counts as ended, and the process holding it is reported. The hot path pays
nothing while data waits: one ``read`` per chunk, as before; ``poll`` only when the pipe is empty.

Which process holds the pipe is found through ``/proc/*/fd`` (Linux); a holder that carries the
job's environment marks (``WORKER_JOB_ID``/``WORKER_JOB_ATTEMPT``, inherited from the connector)
is killed, any other only named. Elsewhere the holder stays unknown and alive.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import signal
from collections.abc import Callable

# After the connector exited: how long its output may stay silent before it counts as ended.
LEFTOVER_DRAIN_S = 1.0
# How often a blocked read looks whether the connector has exited meanwhile: only a pipe held
# open by a process out of reach needs it, so a quiet connector's readers wake once a second.
_WAKE_S = 1.0


class PipeReader(io.FileIO):
    """The raw, non-blocking read end of a pipe; a buffered reader wraps it."""

    def __init__(self, fd: int, on_held: Callable[[PipeReader], None] | None = None) -> None:
        os.set_blocking(fd, False)
        super().__init__(fd, "rb")
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self._owner_gone = False
        self._on_held = on_held
        self.held_open = False  # it was ended by us, not by its writers

    def owner_gone(self) -> None:
        """The connector exited and its group was killed: no one we know of writes any more."""
        self._owner_gone = True

    def readinto(self, buffer: object) -> int:
        while True:
            if self.held_open:
                return 0
            count = super().readinto(buffer)  # type: ignore[arg-type]
            if count is not None:
                return count
            self.wait_for_input()

    def wait_for_input(self) -> None:
        """Wait (one slice) for something to read or the pipe's end; once the connector is gone
        and the pipe stays silent, mark it held open (:attr:`held_open`: treat it as ended)."""
        gone = self._owner_gone
        if not self._poll.poll((LEFTOVER_DRAIN_S if gone else _WAKE_S) * 1000) and gone:
            self.held_open = True
            if self._on_held is not None:
                self._on_held(self)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        buffer = bytearray(size)
        return bytes(buffer[: self.readinto(buffer)])

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)


def pipe_holders(reader: PipeReader) -> list[int]:
    """Pids of other processes with this pipe open (Linux; empty where /proc cannot tell)."""
    try:
        target = f"pipe:[{os.fstat(reader.fileno()).st_ino}]"
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except (OSError, ValueError):
        return []
    holders = []
    for pid in pids:
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(_link(f"/proc/{pid}/fd/{fd}") == target for fd in fds):
                holders.append(pid)
    return holders


def kill_marked(pids: list[int], marks: list[bytes]) -> list[int]:
    """SIGKILL those of ``pids`` whose environment carries every one of ``marks``; returns them."""
    killed = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        if all(mark in environ for mark in marks):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""
