"""Docker images of connectors: is an engine there, is the image there, pull it if not.

Everything goes through the ``docker`` command line, as the Airbyte platform's DockerProcessFactory
did: no daemon API client to pin, and ``DOCKER_HOST`` / contexts work as the user set them up.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

from ferryman.errors import ConnectorReferenceError, LaunchError

# The engine's own messages when the client cannot reach it (Docker 20.10 to 28).
_UNREACHABLE = (
    "cannot connect to the docker daemon",
    "error during connect",
    "is the docker daemon running",
    "permission denied while trying to connect",
)
# A pull that failed because the image or tag does not exist (not worth retrying).
_NOT_FOUND = ("not found", "manifest unknown", "does not exist", "repository does not exist")

_REFERENCE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?"  # registry host[:port]/
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"  # path
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"  # :tag
    r"(?:@sha256:[0-9a-f]{64})?$"  # @digest
)
PULL_TIMEOUT_S = 600.0  # Airbyte's image_exists.sh gave a pull 10 minutes
COMMAND_TIMEOUT_S = 60.0
CANCEL_POLL_S = 0.1  # how soon a pull notices its job's cancel


class DockerUnavailable(LaunchError):
    """No ``docker`` command, or no engine answering it."""

    retryable = False


@dataclass(frozen=True)
class ImageName:
    repository: str
    tag: str  # "latest" when none was given; the digest when pinned by one

    @property
    def reference(self) -> str:
        sep = "@" if self.tag.startswith("sha256:") else ":"
        return f"{self.repository}{sep}{self.tag}"

    @property
    def short(self) -> str:
        """The last path component, for container names: airbyte/source-faker -> source-faker."""
        return self.repository.rsplit("/", 1)[-1]


def parse_image(text: str) -> ImageName:
    if not _REFERENCE.match(text):
        raise ConnectorReferenceError(
            f"docker:{text} is not a valid image reference: write docker:NAME[:TAG], "
            "for example docker:airbyte/source-faker:6.2.21"
        )
    if "@" in text:
        repository, _, digest = text.partition("@")
        return ImageName(repository.rsplit(":", 1)[0] if _has_tag(repository) else repository, digest)
    if _has_tag(text):
        repository, _, tag = text.rpartition(":")
        return ImageName(repository, tag)
    return ImageName(text, "latest")


def _has_tag(text: str) -> bool:
    return ":" in text.rsplit("/", 1)[-1]


def docker_command() -> str:
    found = shutil.which("docker")
    if found is None:
        raise DockerUnavailable(
            "the docker command is not installed: install Docker (https://docs.docker.com/engine/install/) "
            "or use a pypi:, exec: or builtin: connector"
        )
    return found


def run_docker(*args: str, timeout_s: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run one docker command; an engine that does not answer is a DockerUnavailable."""
    try:
        done = subprocess.run(
            [docker_command(), *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise DockerUnavailable(
            f"the Docker engine did not answer `docker {args[0]}` within {timeout_s:g}s: "
            "check that dockerd is healthy (docker info)"
        ) from None
    if done.returncode != 0 and unreachable(done.stderr):
        raise DockerUnavailable(
            f"no Docker engine answers ({engine_reason(done.stderr)}): start one "
            "(sudo systemctl start docker, or sudo dockerd &) or point DOCKER_HOST at one"
        )
    return done


def unreachable(stderr: str) -> bool:
    lowered = stderr.lower()
    return any(marker in lowered for marker in _UNREACHABLE)


def engine_reason(stderr: str) -> str:
    """The engine's reason in one line: its last non-empty line, without the 'Error response' prefix."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else "no reason given"
    return re.sub(r"^Error response from daemon:\s*", "", reason)


def image_id(image: ImageName) -> str | None:
    """The engine's id of the image (``sha256:...``), or None when it does not have it."""
    done = run_docker("image", "inspect", "--format", "{{.Id}}", image.reference)
    return done.stdout.strip() or None if done.returncode == 0 else None


def ensure_image(image: ImageName, cancel: threading.Event | None = None) -> str:
    """Use the image if the engine has it, pull it if not; returns its id. A failed pull is one
    clear line; a ``cancel`` set while it pulls stops the pull (a LaunchError saying so)."""
    found = image_id(image)
    if found:
        return found
    code, stderr = _pull(image, cancel)
    found = image_id(image) if code == 0 else None
    if found:
        return found
    reason = engine_reason(stderr)
    message = (
        f"could not pull image {image.repository} (tag {image.tag}): {reason}; "
        "check the name and tag, or build or load the image locally (docker images lists them)"
    )
    if any(marker in reason.lower() for marker in _NOT_FOUND):
        raise ConnectorReferenceError(message)
    raise LaunchError(message)


def _pull(image: ImageName, cancel: threading.Event | None) -> tuple[int, str]:
    """``docker pull``: its exit code and stderr. It runs in a session of its own: a terminal's
    Ctrl-C is for Ferryman, whose cancel then stops the pull (killed the pull would only have
    looked like one that failed)."""
    with subprocess.Popen(
        [docker_command(), "pull", "--quiet", image.reference],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as pull:
        deadline = time.monotonic() + PULL_TIMEOUT_S
        while True:
            try:
                _, stderr = pull.communicate(timeout=CANCEL_POLL_S)
                break
            except subprocess.TimeoutExpired:
                stopped = cancel is not None and cancel.is_set()
                if not stopped and time.monotonic() < deadline:
                    continue
                pull.kill()
                pull.communicate()
                if stopped:
                    raise LaunchError(
                        f"the pull of image {image.reference} was stopped: the job was cancelled"
                    ) from None
                raise DockerUnavailable(
                    f"the Docker engine did not answer `docker pull` within {PULL_TIMEOUT_S:g}s: "
                    "check that dockerd is healthy (docker info)"
                ) from None
    if pull.returncode != 0 and unreachable(stderr):
        raise DockerUnavailable(
            f"no Docker engine answers ({engine_reason(stderr)}): start one "
            "(sudo systemctl start docker, or sudo dockerd &) or point DOCKER_HOST at one"
        )
    return pull.returncode, stderr
