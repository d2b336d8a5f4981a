"""Connectors as local processes (built-in, managed venv, or a local executable).

Each connector runs in a session and process group of its own, so a signal reaches everything
it started and nothing it started outlives the job. A child that escapes into a session of its
own is out of the group's reach; its hold on the connector's output is ended by the pipe readers
(see ``pipes``), which name it, and kill it when it carries the job's environment.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import subprocess
from collections.abc import Callable
from typing import BinaryIO

from ferryman.errors import FerrymanError, LaunchError
from ferryman.launchers.base import BUFFER_SIZE, LaunchRequest, TimedPipeWriter, make_pipe
from ferryman.launchers.pipes import LEFTOVER_DRAIN_S, PipeReader, kill_marked, pipe_holders
from ferryman.launchers.watchdog import WATCHDOG


def _start_failure(exc: OSError, program: str) -> str:
    """Why ``program`` could not be started, in words that point at the fix: the kernel says
    "No such file or directory" also when the file is there but its ``#!`` interpreter is not."""
    reason = exc.strerror or str(exc)
    if not os.path.isfile(program):
        return reason
    try:
        with open(program, "rb") as file:
            head = file.readline(256)
    except OSError:
        return reason
    shebang = head[2:].strip().decode("utf-8", "replace") if head.startswith(b"#!") else ""
    if exc.errno == errno.ENOENT and shebang:
        return f"its interpreter was not found (first line: #!{shebang}); fix that line or install it"
    if exc.errno == errno.ENOEXEC:
        return f"{reason}: not a program this machine runs (a script needs a #! first line)"
    return reason


class LocalProcess:
    def __init__(
        self, request: LaunchRequest, argv: list[str] | None = None, env: dict[str, str] | None = None
    ) -> None:
        """Start the request's connector, or ``argv`` with ``env`` on its behalf (a docker client)."""
        self.role = request.role
        stdout_r, stdout_w = make_pipe()
        stderr_r, stderr_w = os.pipe()
        stdin_r, stdin_w = make_pipe() if request.with_stdin else (subprocess.DEVNULL, -1)
        if argv is None:
            argv = [*request.connector.command, *request.args]
        if env is None:
            env = {**os.environ, **request.variables()}
        try:
            self._popen = subprocess.Popen(
                argv,
                stdin=stdin_r,
                stdout=stdout_w,
                stderr=stderr_w,
                # The caller's directory, as for any command a user runs: relative paths in a
                # connector's config mean what the user meant. Inputs are passed by absolute path.
                cwd=None,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            for fd in (stdout_r, stdout_w, stderr_r, stderr_w, stdin_r, stdin_w):
                if fd >= 0:
                    os.close(fd)
            raise LaunchError(
                f"could not start the {request.role} connector: {_start_failure(exc, argv[0])}",
                command=argv[0],
            ) from exc
        os.close(stdout_w)
        os.close(stderr_w)
        if stdin_r >= 0:
            os.close(stdin_r)
        self.pid = self._popen.pid
        WATCHDOG.watch_group(self.pid)  # stopped even if this process is killed (watchdog)
        variables = request.variables()
        self._marks = [f"{k}={variables[k]}".encode() for k in ("WORKER_JOB_ID", "WORKER_JOB_ATTEMPT")]
        self._warn: Callable[[str], None] | None = None
        self._readers = {
            "stdout": PipeReader(stdout_r, self._held_open),
            "stderr": PipeReader(stderr_r, self._held_open),
        }
        self.stdout: BinaryIO = io.BufferedReader(self._readers["stdout"], BUFFER_SIZE)
        self.stderr: BinaryIO = io.BufferedReader(self._readers["stderr"], 1 << 16)
        self.stdin_raw: TimedPipeWriter | None = None
        self.stdin: io.BufferedWriter | None = None
        if stdin_w >= 0:
            self.stdin_raw = TimedPipeWriter(stdin_w, "wb")
            self.stdin = io.BufferedWriter(self.stdin_raw, buffer_size=BUFFER_SIZE)

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout_s: float | None = None) -> int | None:
        try:
            return self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def terminate(self) -> None:
        self._signal_group(signal.SIGTERM)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def kill_leftovers(self, warn: Callable[[str], None] | None = None) -> None:
        # The group outlives its leader while any member lives: a grandchild holding stdout
        # open would otherwise keep the worker waiting for an end of file that never comes.
        self._signal_group(signal.SIGKILL)
        self._warn = warn
        for reader in self._readers.values():
            reader.owner_gone()

    def _held_open(self, reader: PipeReader) -> None:
        """A process the connector left in another session holds its output: say so, end it."""
        name = next(key for key, value in self._readers.items() if value is reader)
        holders = pipe_holders(reader)
        killed = kill_marked(holders, self._marks)
        spared = [pid for pid in holders if pid not in killed]
        who = f"process(es) {', '.join(map(str, holders))}" if holders else "a process we cannot name"
        fate = "; killed " + ", ".join(map(str, killed)) if killed else ""
        if spared:
            fate += "; left alone (not marked as this job's): " + ", ".join(map(str, spared))
        if self._warn is not None:
            self._warn(
                f"the {self.role} exited but {who} it left in a session of its own still held its "
                f"{name}: stopped reading after {LEFTOVER_DRAIN_S:g}s of silence{fate}"
            )

    def describe(self) -> str:
        return f"pid {self.pid}"

    def launcher_failure(self, code: int | None, stderr_tail: str) -> FerrymanError | None:
        return None  # a local process that cannot start fails in launch(), before it has a code

    def close(self) -> None:
        for stream in (self.stdout, self.stderr, self.stdin):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        WATCHDOG.forget_group(self.pid)


class LocalLauncher:
    def launch(self, request: LaunchRequest) -> LocalProcess:
        return LocalProcess(request)
