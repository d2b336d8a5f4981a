"""Connectors as local processes (built-in, managed venv, or a local executable).

Each connector runs in a session and process group of its own, so a signal reaches everything
it started and nothing it started outlives the job.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
from typing import BinaryIO

from ferryman.errors import LaunchError
from ferryman.launchers.base import BUFFER_SIZE, LaunchRequest, TimedPipeWriter, make_pipe


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
                f"could not start the {request.role} connector: {exc.strerror or exc}",
                command=argv[0],
            ) from exc
        os.close(stdout_w)
        os.close(stderr_w)
        if stdin_r >= 0:
            os.close(stdin_r)
        self.pid = self._popen.pid
        self.stdout: BinaryIO = open(stdout_r, "rb", buffering=BUFFER_SIZE)  # noqa: SIM115
        self.stderr: BinaryIO = open(stderr_r, "rb", buffering=1 << 16)  # noqa: SIM115
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

    def kill_leftovers(self) -> None:
        # The group outlives its leader while any member lives: a grandchild holding stdout
        # open would otherwise keep the worker waiting for an end of file that never comes.
        self._signal_group(signal.SIGKILL)

    def describe(self) -> str:
        return f"pid {self.pid}"

    def close(self) -> None:
        for stream in (self.stdout, self.stderr, self.stdin):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class LocalLauncher:
    def launch(self, request: LaunchRequest) -> LocalProcess:
        return LocalProcess(request)
