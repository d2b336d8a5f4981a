"""Containers whose removal failed because no Docker engine answered: removed once one does.

The engine can go away mid-job (dockerd restarted, a DOCKER_HOST over the network dropped): the
``docker run`` client then ends, but a container on an engine that lives on (or that comes back
with live-restore) goes on running its connector. ``docker rm --force`` cannot reach it now, so
its name is kept here, and a thread of this process asks again, every few seconds, until the
engine answers. The watchdog keeps it listed meanwhile: if this process ends first, the watchdog
tries once more, and an engine starting later sweeps what is left (its attempt is over).
"""

from __future__ import annotations

import threading

from ferryman.connectors.docker import DockerUnavailable, run_docker
from ferryman.launchers.watchdog import WATCHDOG

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 30.0


class ContainerReaper:
    def __init__(self) -> None:
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def remove_later(self, name: str) -> None:
        with self._lock:
            self._pending.add(name)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="container-reaper", daemon=True)
                self._thread.start()

    def pending(self, name: str) -> bool:
        with self._lock:
            return name in self._pending

    def _run(self) -> None:
        pause = FIRST_RETRY_S
        while True:
            self._wake.wait(pause)
            with self._lock:
                names = sorted(self._pending)
            if not names:
                with self._lock:
                    if not self._pending:
                        self._thread = None
                        return
                continue
            try:
                run_docker("rm", "--force", *names, timeout_s=30)
            except DockerUnavailable:
                pause = min(pause * 2, MAX_RETRY_S)
                continue
            # The engine answered: each is gone now ("no such container" for those already gone).
            pause = FIRST_RETRY_S
            with self._lock:
                self._pending.difference_update(names)
            for name in names:
                WATCHDOG.forget_container(name)


REAPER = ContainerReaper()
