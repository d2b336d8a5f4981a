"""What every launcher gives a worker: a process with binary pipes it can signal and reap."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from ferryman.connectors import ResolvedConnector
from ferryman.errors import FerrymanError

# Linux lets a pipe grow to /proc/sys/fs/pipe-max-size (1 MiB by default); a 1 MiB pipe and
# 1 MiB buffers at both ends doubled the throughput of a Python pipeline on a 2-core machine.
PIPE_SIZE = 1 << 20
BUFFER_SIZE = 1 << 20


@dataclass(frozen=True)
class LaunchRequest:
    connector: ResolvedConnector
    args: list[str]
    workdir: Path  # the attempt dir, holding the files named in ``args``
    role: str  # "source", "destination" or the command of a single-connector job
    with_stdin: bool = False
    env: dict[str, str] = field(default_factory=dict)
    # Who the process works for, for container names and labels.
    job_id: str = ""
    attempt: int = 0
    job_type: str = ""

    def variables(self) -> dict[str, str]:
        """What the connector finds in its environment beyond the launcher's own: the connector's
        variables, the job metadata Airbyte passes, then the request's."""
        return {
            **self.connector.env,
            "WORKER_CONNECTOR_IMAGE": self.connector.display_image,
            "WORKER_JOB_ID": self.job_id,
            "WORKER_JOB_ATTEMPT": str(self.attempt),
            **self.env,
        }


class TimedPipeWriter(io.FileIO):
    """The raw end of a connector's stdin that remembers since when a write has been blocked.

    BufferedWriter calls it once per filled buffer, so the record path pays nothing per message.
    """

    blocked_since: float | None = None

    def write(self, data: object) -> int | None:  # type: ignore[override]
        self.blocked_since = time.monotonic()
        try:
            return super().write(data)  # type: ignore[arg-type]
        finally:
            self.blocked_since = None


class ConnectorProcess(Protocol):
    role: str
    pid: int
    stdout: BinaryIO
    stderr: BinaryIO
    stdin: io.BufferedWriter | None
    stdin_raw: TimedPipeWriter | None

    def poll(self) -> int | None: ...

    def wait(self, timeout_s: float | None = None) -> int | None: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def kill_leftovers(self, warn: Callable[[str], None] | None = None) -> None:
        """Kill whatever the connector left running after it exited (Docker's ``--init`` does the
        same), and from now on let its stdout and stderr end once they are drained, even when a
        process out of reach still holds them; ``warn`` hears about such a process."""

    def close(self) -> None: ...

    def describe(self) -> str:
        """Where to look for it: ``pid N``, or the container's name."""

    def launcher_failure(self, code: int | None, stderr_tail: str) -> FerrymanError | None:
        """Why the connector never ran, told by its exit ``code`` and last stderr lines (Docker's
        125/126/127): a UserInputError when a setting of the user's is wrong, else a
        LaunchError; None when the exit was the connector's own."""


class Launcher(Protocol):
    def launch(self, request: LaunchRequest) -> ConnectorProcess: ...


def enlarge_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, 1031, PIPE_SIZE)  # F_SETPIPE_SZ
    except (ImportError, OSError):
        pass  # not Linux, or above the system limit: the default size still works


def make_pipe() -> tuple[int, int]:
    read_fd, write_fd = os.pipe()
    enlarge_pipe(read_fd)
    return read_fd, write_fd
