"""Connectors never outlive the Ferryman process that started them, even one killed with SIGKILL.

A connector runs in a session of its own (a Ctrl-C is for Ferryman, which stops its connectors
in order), so the kernel does not end it with its parent. Every stop path of the worker ends it;
a Ferryman process that dies without running them (SIGKILL, the OOM killer, a crash in C) would
leave it running: a local source blocked on an API, or a container writing into a pipe nobody
reads, until the next Ferryman command's recovery. So the first launch of a process starts a
watchdog (:mod:`ferryman.launchers._watchdog_main`, in a session of its own) and tells it, over
a pipe only this process writes to, each connector's process group or container as it starts and
ends. When this process ends, however it ends, the kernel closes the pipe; connectors still
listed then are stopped: SIGTERM, ``FERRYMAN_CANCEL_GRACE_S`` seconds (10), then SIGKILL (for a
container ``docker kill --signal TERM``, then ``docker rm --force``).

Linux (and other systems with /proc and process groups); where the watchdog cannot start, the
launch goes on without it and the next command's recovery remains the safety net.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

_SCRIPT = Path(__file__).with_name("_watchdog_main.py")


class Watchdog:
    """This process's watchdog, started at the first registration."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None  # the process that started it: a fork must start its own
        self._failed = False
        self._process: subprocess.Popen[bytes] | None = None  # kept: it runs as long as we do

    def watch_group(self, pid: int) -> None:
        self._send(f"+ group {pid} {start_time(pid)}")

    def forget_group(self, pid: int) -> None:
        self._send(f"- group {pid}", start=False)

    def watch_container(self, name: str, docker: str) -> None:
        self._send(f"+ container {name} {docker}")

    def forget_container(self, name: str) -> None:
        self._send(f"- container {name}", start=False)

    def _send(self, line: str, start: bool = True) -> None:
        data = (line + "\n").encode()
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's pipe is not ours to hold
                if self._fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(self._fd)
                self._fd, self._process, self._pid, self._failed = None, None, os.getpid(), False
            if self._fd is None:
                if not start or self._failed:
                    return
                self._fd, self._process = self._start()
                if self._fd is None:
                    self._failed = True
                    return
            try:
                os.write(self._fd, data)  # a short line: one atomic write
            except BlockingIOError:
                # The watchdog is behind (stopped, starved) and its pipe full: this line is lost,
                # never the pipe, whose end would make it stop every connector of this live
                # process. A lost "+" leaves recovery as the safety net; a lost "-" names a group
                # that ended (its start time spares a reused pid).
                return
            except OSError:  # the watchdog is gone (someone killed it): go on without
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd, self._failed = None, True

    @staticmethod
    def _start() -> tuple[int | None, subprocess.Popen[bytes] | None]:
        read_fd, write_fd = os.pipe()  # neither end is inherited by anything else we start
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(_SCRIPT)],
                stdin=read_fd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C is not for it
                env=_environment(),
            )
        except OSError:
            os.close(write_fd)
            return None, None
        finally:
            os.close(read_fd)
        os.set_blocking(write_fd, False)  # a watchdog that stopped reading must not block a launch
        return write_fd, process


def _environment() -> dict[str, str]:
    """What the watchdog and the docker commands it may run need, and nothing else (no secrets)."""
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "FERRYMAN_CANCEL_GRACE_S")
    return {k: v for k, v in os.environ.items() if k in keep or k.startswith(("DOCKER_", "LC_"))}


def start_time(pid: int) -> str:
    """When ``pid`` started (field 22 of /proc/PID/stat, clock ticks since boot); ``?`` unknown.
    With the pid it names a process for good: pids are reused, (pid, start time) pairs are not."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return "?"


WATCHDOG = Watchdog()
