"""Shutting connectors down: grace period, then SIGTERM, then SIGKILL, and nothing left behind.

A worker's supervisor loop calls :meth:`ConnectorLifecycle.tick` a few times a second; the
lifecycle decides, from the clock, when to escalate. Nothing here sleeps.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from enum import StrEnum

from ferryman.errors import UserInputError
from ferryman.jobs.failures import FailureOrigin, FailureReason, FailureType
from ferryman.launchers.base import ConnectorProcess
from ferryman.settings import LifecycleSettings
from ferryman.workers.attempt_log import MAX_LINE_CHARS, AttemptLog, decode_line

WORKER = "worker"
# Exit codes that mean "ended as asked" once the worker has sent SIGTERM (Airbyte tolerates 143).
TERMINATED_CODES = (0, 143, -15)


class Phase(StrEnum):
    RUNNING = "running"
    GRACE = "grace"  # input ended: waiting for the connector to exit on its own
    TERMINATING = "terminating"  # SIGTERM sent, waiting term_grace_s
    CANCELLING = "cancelling"  # SIGTERM sent on cancel, waiting cancel_grace_s
    KILLED = "killed"
    EXITED = "exited"


class ConnectorLifecycle:
    def __init__(self, process: ConnectorProcess, settings: LifecycleSettings, log: AttemptLog) -> None:
        self.process = process
        self.settings = settings
        self.log = log
        self.phase = Phase.RUNNING
        self.deadline: float | None = None
        self.exit_code: int | None = None
        self.signalled = False  # the worker sent a signal, so a signal death is expected
        self.killed = False

    @property
    def exited(self) -> bool:
        return self.phase is Phase.EXITED

    def input_ended(self, now: float) -> None:
        if self.phase is Phase.RUNNING:
            self.phase = Phase.GRACE
            self.deadline = now + self.settings.exit_grace_s

    def stop(self, now: float, reason: str) -> None:
        """Stop now: SIGTERM, then SIGKILL after the cancel grace period."""
        if self.phase in (Phase.RUNNING, Phase.GRACE, Phase.TERMINATING):
            if self.process.poll() is None:
                self.log.info(WORKER, f"stopping the {self.process.role} ({reason}): SIGTERM")
                self.signalled = True
                self.process.terminate()
            self.phase = Phase.CANCELLING
            self.deadline = now + self.settings.cancel_grace_s

    def tick(self, now: float) -> bool:
        """Advance the shutdown; True once the connector and everything it started are gone."""
        if self.phase is Phase.EXITED:
            return True
        code = self.process.poll()
        if code is not None:
            self.exit_code = code
            self.phase = Phase.EXITED
            self.process.kill_leftovers(lambda message: self.log.warn(WORKER, message))
            return True
        if self.deadline is None or now < self.deadline:
            return False
        role = self.process.role
        if self.phase is Phase.GRACE:
            self.log.warn(
                WORKER,
                f"the {role} did not exit within {self.settings.exit_grace_s:g}s of the end "
                "of its input: SIGTERM",
            )
            self.signalled = True
            self.process.terminate()
            self.phase = Phase.TERMINATING
            self.deadline = now + self.settings.term_grace_s
        elif self.phase in (Phase.TERMINATING, Phase.CANCELLING):
            self.log.warn(WORKER, f"the {role} ignored SIGTERM: SIGKILL")
            self.killed = True
            self.process.kill()
            self.phase = Phase.KILLED
            self.deadline = None
        return False

    def launcher_failure(self, stderr_tail: str, origin: FailureOrigin) -> FailureReason | None:
        """The connector never ran (Docker refused the container, or its command is missing):
        a config_error when a setting of the user's is to blame, else a system_error."""
        if self.exit_code is None or self.killed:
            return None
        error = self.process.launcher_failure(self.exit_code, stderr_tail)
        if error is None:
            return None
        type_ = FailureType.CONFIG_ERROR if isinstance(error, UserInputError) else FailureType.SYSTEM_ERROR
        return FailureReason.of(origin, type_, str(error), int(time.time() * 1000))

    def exit_failure(self) -> str | None:
        """Why the exit counts as a failure, or None when it ended as expected."""
        code = self.exit_code
        if self.killed:
            return f"the {self.process.role} had to be killed (SIGKILL) after ignoring SIGTERM"
        if code == 0 or (self.signalled and code in TERMINATED_CODES):
            return None
        if code is not None and code < 0:
            return f"the {self.process.role} was killed by signal {-code}"
        return f"the {self.process.role} exited with code {code}"


class StderrDrain:
    """Logs every stderr line of a connector on a thread of its own, keeping the last few."""

    def __init__(self, process: ConnectorProcess, log: AttemptLog, side: str, keep: int = 20):
        self.tail: deque[str] = deque(maxlen=keep)
        self.cpu_s = 0.0
        self._process = process
        self._log = log
        self._side = side
        self.thread = threading.Thread(target=self._run, name=f"{side}-stderr", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        # readline with a limit: a line that never ends (a progress bar redrawn with \r for
        # hours, a 1 GB dump) costs the bytes of one logged line, not its own length in memory.
        stderr = self._process.stderr
        try:
            while raw := stderr.readline(MAX_LINE_CHARS + 1):
                left_out = 0
                if not raw.endswith(b"\n"):
                    while rest := stderr.readline(MAX_LINE_CHARS):
                        left_out += len(rest)
                        if rest.endswith(b"\n"):
                            left_out -= 1
                            break
                self.tail.append(self._log.head(decode_line(raw[:4000]), len(decode_line(raw[:2000]))))
                self._log.write_bytes(self._side, "INFO", raw, left_out)
        except (OSError, ValueError):
            pass
        finally:
            self.cpu_s = time.thread_time()

    def join(self, timeout_s: float | None = None) -> None:
        self.thread.join(timeout_s)

    def last_lines(self) -> str:
        return "\n".join(self.tail)
