"""What a ``docker run`` client's exit code says when the connector never ran.

Docker documents three exit codes of its own (``docker run --help``, "Exit status"):

    125  docker run itself failed: a flag the engine refused (a --memory below its minimum,
         more --cpus than the host has, a network or user that does not exist), or no engine
    126  the container's command cannot be invoked (not executable)
    127  the container's command was not found

With ``--init``, 126 and 127 come from docker-init (tini), which prints ``[FATAL tini ...] exec
X failed: ...``; a connector may exit with those codes too, so only the launcher's own marks
(the docker CLI's ``docker run --help`` hint, tini's FATAL line) make them a start failure.
A 125 after which the CLI logs ``error waiting for container`` is an engine that went away under
a running container (dockerd restarted, its socket unreachable): the connector's end was not
seen, so it is reported as the engine lost, never as the connector's exit. A 125 about a
setting the user gave (limits, network, user, the /local mount) is that user's
to fix: a config error, never retried. Any other 125 (an unknown default runtime, a full disk,
an engine that went away) is the platform's: a system error, retried as a failed start is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ferryman.errors import FerrymanError, LaunchError, UserInputError

CLI_FAILED = 125
CANNOT_INVOKE = 126
NOT_FOUND = 127
_CLI_HINT = re.compile(r"^(?:Run|See) 'docker run --help'", re.MULTILINE)
_TINI_FATAL = re.compile(r"\[FATAL tini \(\d+\)\]\s*(.*)")
_DAEMON_PREFIX = re.compile(r"^(?:docker:\s*)?(?:Error response from daemon:\s*)?", re.IGNORECASE)
# What the docker CLI logs when the engine went away under a running container.
_LOST = re.compile(r"error waiting for container: [^\"]*")
_UNREACHABLE = ("cannot connect to the docker daemon", "error during connect", "is the docker daemon running")


class ContainerSettingError(UserInputError):
    """The engine refused a container setting the user gave (a limit, the network, the user)."""


@dataclass(frozen=True)
class UserSetting:
    """A ``docker run`` flag that came from the user, and where they set it."""

    flag: str  # "--memory", "--cpus", "--network", "--user", "-v"
    value: str
    origin: str  # the variable or option that set it, e.g. JOB_MAIN_CONTAINER_MEMORY_LIMIT
    words: tuple[str, ...]  # what the engine's reason mentions when it is about this flag

    def describe(self) -> str:
        return f"{self.origin} ({self.value})"


def launcher_failure(
    code: int | None, stderr_tail: str, role: str, settings: list[UserSetting]
) -> FerrymanError | None:
    """Why a container never ran its connector, or None when the exit was the connector's own."""
    lost = next(filter(None, map(_LOST.search, stderr_tail.splitlines())), None)
    if code == CLI_FAILED and lost is not None:
        # The client's attach to the engine broke: whether the connector ended, nobody saw.
        return LaunchError(
            f"lost the Docker engine while the {role} container ran ({lost.group(0)}): "
            "check that dockerd is healthy (docker info)"
        )
    if code == CLI_FAILED and _CLI_HINT.search(stderr_tail):
        reason = _cli_reason(stderr_tail)
        lowered = reason.lower()
        if any(marker in lowered for marker in _UNREACHABLE):
            return LaunchError(
                f"Docker could not start the {role} container: no Docker engine answers ({reason})"
            )
        blamed = [s.describe() for s in settings if any(word in lowered for word in s.words)]
        if blamed:
            return ContainerSettingError(
                f"Docker refused to start the {role} container: {reason}; check {' and '.join(blamed)}"
            )
        return LaunchError(
            f"Docker could not start the {role} container (docker run exit code 125): {reason}"
        )
    if code in (CANNOT_INVOKE, NOT_FOUND):
        fatal = next(
            (m.group(1).strip() for m in map(_TINI_FATAL.search, stderr_tail.splitlines()) if m), None
        )
        if fatal is None and _CLI_HINT.search(stderr_tail):  # without --init: the runtime says it
            fatal = _cli_reason(stderr_tail)
        if fatal is not None:
            what = "was not found" if code == NOT_FOUND else "cannot be run"
            return LaunchError(
                f"the {role} container's command {what} (exit code {code}: {fatal}): "
                "check the image's entrypoint, or that the image is an Airbyte connector"
            )
    return None


def _cli_reason(stderr_tail: str) -> str:
    """The docker CLI's reason in one line: its first non-empty line, without its prefixes."""
    for line in stderr_tail.splitlines():
        if line.strip():
            return _DAEMON_PREFIX.sub("", line.strip()).rstrip(".") or line.strip()
    return "no reason given"
