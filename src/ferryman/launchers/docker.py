"""Connectors in Docker containers, started as the Airbyte platform's DockerProcessFactory did.

    docker run --rm --init -i -w /data/<job>/<attempt> --log-driver none --name <name>
        --label io.ferryman.*=... [--network N] -v <attempt dir>/.container-<name>:/data/<job>/<attempt>
        -v <attempt dir>/<file>:/data/<job>/<attempt>/<file> ... -v <local>:/local
        [--user UID:GID] -e K ... [--cpus C] [--memory-reservation R] [--memory M] <image> <args>

A container sees only the files of the attempt dir its arguments name: the source never the
destination's config (its credentials), nor either one the attempt's log. Its working directory
is an empty directory of its own, writable as the attempt dir was.

The worker talks to the ``docker run`` client's stdio, which the engine attaches to the
container's. Ending the client does not end the container, so every stop goes to the container by
name (``docker kill``), and after every exit ``docker rm -f`` makes sure it is gone. Containers
carry labels naming their job, attempt and owner, so a restarted engine can remove what a crashed
one left (:func:`remove_orphans`).

A client that dies by a signal (SIGKILL, the OOM killer) leaves its container running, and ``-i``
makes the engine close the container's stdin as the client's connection drops: a destination
takes that for the end of its input and commits what it holds, echoing states nobody reads, so
the retry sends those records again. A thread per client waits for its exit (a pidfd) and kills
the container (SIGKILL) the moment the client is seen dead by a signal, before anything else.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import select
import shutil
import signal
import socket
import string
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ferryman.connectors.docker import DockerUnavailable, docker_command, run_docker
from ferryman.errors import FerrymanError, LaunchError, UserInputError
from ferryman.launchers.base import LaunchRequest
from ferryman.launchers.docker_exits import UserSetting, launcher_failure
from ferryman.launchers.docker_reaper import REAPER
from ferryman.launchers.local import LocalProcess
from ferryman.launchers.watchdog import WATCHDOG, start_time
from ferryman.settings import ferryman_home
from ferryman.settings import local_root as default_local_root

CONTAINER_ROOT = "/data"  # attempt dirs appear under it, as Airbyte's workspace did
LOCAL_MOUNT = "/local"  # a host dir for connectors' own output (Airbyte's LOCAL_ROOT)
LABEL = "io.ferryman"
REMOVE_WAIT_S = 30.0  # how long the end of an attempt waits for the engine to remove a container
MANAGED = f"{LABEL}.managed"
SCRATCH_PREFIX = ".container-"  # a container's working directory in the attempt dir: .container-<name>
_SIGNALS = {int(sig) for sig in signal.Signals}
_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]+")
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmgBKMG]|[KMGkmg]i)?[bB]?$")


_LIMIT_FLAGS = {"memory_limit": "--memory", "memory_request": "--memory-reservation", "cpu_limit": "--cpus"}


@dataclass(frozen=True)
class ResourceLimits:
    """Docker's --memory, --memory-reservation and --cpus; None = no limit (Airbyte's default)."""

    memory_limit: str | None = None
    memory_request: str | None = None
    cpu_limit: str | None = None
    # Which variable or option set each limit, for the one line that blames it when Docker refuses it.
    origins: dict[str, str] = field(default_factory=dict, compare=False)

    def merged_over(self, base: ResourceLimits) -> ResourceLimits:
        values = {}
        origins = {}
        for name in _LIMIT_FLAGS:
            own = getattr(self, name)
            chosen, source = (own, self) if own else (getattr(base, name), base)
            values[name] = chosen
            if chosen and name in source.origins:
                origins[name] = source.origins[name]
        return ResourceLimits(**values, origins=origins)

    def docker_args(self) -> list[str]:
        args = []
        if self.cpu_limit:
            args.append(f"--cpus={self.cpu_limit}")
        if self.memory_request:
            args.append(f"--memory-reservation={self.memory_request}")
        if self.memory_limit:
            args.append(f"--memory={self.memory_limit}")
        return args

    def user_settings(self) -> list[UserSetting]:
        """The limits as settings Docker may refuse, each with the name the user set it by."""
        found = []
        for name, flag in _LIMIT_FLAGS.items():
            value = getattr(self, name)
            if value:
                words = ("cpu",) if name == "cpu_limit" else ("memory",)
                found.append(UserSetting(flag, value, self.origins.get(name, flag), words))
        return found

    @classmethod
    def from_env(cls, prefix: str, environ: dict[str, str] | None = None) -> ResourceLimits:
        env = os.environ if environ is None else environ
        limits = cls(
            memory(f"{prefix}_MEMORY_LIMIT", env.get(f"{prefix}_MEMORY_LIMIT")),
            memory(f"{prefix}_MEMORY_REQUEST", env.get(f"{prefix}_MEMORY_REQUEST")),
            cpus(f"{prefix}_CPU_LIMIT", env.get(f"{prefix}_CPU_LIMIT")),
        )
        suffixes = {
            "memory_limit": "MEMORY_LIMIT",
            "memory_request": "MEMORY_REQUEST",
            "cpu_limit": "CPU_LIMIT",
        }
        limits.origins.update(
            {name: f"{prefix}_{suffixes[name]}" for name in suffixes if getattr(limits, name)}
        )
        return limits

    @classmethod
    def of_connector(cls, limits: dict[str, str]) -> ResourceLimits:
        """A connector's own limits (``sources create --memory-limit ...``)."""
        options = {
            "memory_limit": "--memory-limit",
            "memory_request": "--memory-request",
            "cpu_limit": "--cpu-limit",
        }
        origins = {name: f"the connector's {options[name]}" for name in options if limits.get(name)}
        return cls(**{name: limits.get(name) for name in options}, origins=origins)


MIN_MEMORY_BYTES = 6 << 20  # Docker refuses a --memory or --memory-reservation below 6 MB
MIN_CPUS = 0.01  # and --cpus below 0.01 (above the host's CPU count too, which only it knows)
_UNIT_BYTES = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def memory(name: str, raw: str | None) -> str | None:
    """A memory size as Docker takes it; Kubernetes' 512Mi / 2Gi (Airbyte's style) are accepted."""
    if raw is None or not raw.strip():
        return None
    match = _MEMORY.match(raw.strip())
    if not match:
        raise UserInputError(f"{name} must be a memory size such as 512m, 2g or 2Gi, got {raw!r}")
    number, unit = match.groups()
    unit = (unit or "b")[0].lower()
    # A bare number is bytes (Docker's and Kubernetes' rule): "0.5" or "2" meant gigabytes, most
    # likely, and Docker would refuse them only when the job runs (or round half a byte to none).
    if float(number) * _UNIT_BYTES[unit] < MIN_MEMORY_BYTES:
        raise UserInputError(
            f"{name} must be at least 6m (Docker's minimum), got {raw!r}: write a unit, such as 512m "
            "or 2g, or leave it unset for no limit"
        )
    return f"{number}{unit}"


def cpus(name: str, raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value <= 0:
        raise UserInputError(f"{name} must be a positive number of CPUs such as 0.5 or 2, got {raw!r}")
    if value < MIN_CPUS:
        raise UserInputError(f"{name} must be at least {MIN_CPUS:g} CPUs (Docker's minimum), got {raw!r}")
    return raw.strip()


@dataclass(frozen=True)
class DockerSettings:
    network: str | None = "host"  # Airbyte's DOCKER_NETWORK default: connectors reach localhost
    local_root: Path | None = None  # mounted at /local; None = no such mount
    user: str | None = None  # --user; None = the image's own user
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    check_limits: ResourceLimits = field(default_factory=ResourceLimits)
    mounts: tuple[tuple[str, str], ...] = ()  # further (host, container) bind mounts
    labels: dict[str, str] = field(default_factory=dict)  # e.g. which store the jobs live in

    @classmethod
    def from_env(cls, labels: dict[str, str] | None = None) -> DockerSettings:
        env = os.environ
        network = env.get("FERRYMAN_DOCKER_NETWORK") or env.get("DOCKER_NETWORK") or "host"
        local_root = default_local_root(ferryman_home())
        user_setting = env.get("FERRYMAN_DOCKER_USER", "host")
        if user_setting == "host":
            user: str | None = f"{os.getuid()}:{os.getgid()}"
        elif user_setting == "image":
            user = None
        else:
            user = user_setting
        limits = ResourceLimits.from_env("JOB_MAIN_CONTAINER")
        return cls(
            network=None if network == "default" else network,
            local_root=local_root,
            user=user,
            limits=limits,
            check_limits=ResourceLimits.from_env("CHECK_JOB_MAIN_CONTAINER").merged_over(limits),
            labels=dict(labels or {}),
        )


def container_name(image: str, job_type: str, job_id: str, attempt: int, role: str) -> str:
    """``<short image>-<job type>-<job>-<attempt>-<role>-<5 letters>``, at most 128 characters,
    starting with a letter (Airbyte's ProcessFactory.createProcessName, plus the role)."""
    short = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    suffix = "".join(random.choices(string.ascii_lowercase, k=5))
    parts = [short, job_type, job_id, str(attempt), role, suffix]
    name = _NAME_CHARS.sub("_", "-".join(part for part in parts if part))
    name = name[-128:]
    return name if name[0].isalpha() else "f" + name[1:]


def owner_label() -> str:
    """This process, in a form that stays unique after it dies: host, pid and start time."""
    return f"{socket.gethostname()}:{os.getpid()}:{start_time(os.getpid())}"


def owner_alive(owner: str) -> bool | None:
    """Whether the process named by an owner label lives; None when it is on another host."""
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if not os.path.exists(f"/proc/{pid}"):
        return False
    return started in ("?", start_time(pid))


class DockerProcess(LocalProcess):
    """The ``docker run`` client, whose stops go to the container it attached to."""

    def __init__(
        self, request: LaunchRequest, argv: list[str], env: dict[str, str], name: str, scratch: Path
    ) -> None:
        self.name = name
        self.scratch = scratch
        self._term_pending = False
        self.user_settings: list[UserSetting] = []
        self.engine_lost = False  # a command to the container found no engine answering
        # The client died by a signal while its container ran, and the container was killed.
        self.client_lost: str | None = None
        self._client_seen = threading.Lock()  # held while the client's exit is acted on
        self._client_handled = False
        self._client_killed_by_us = False  # kill() SIGKILLs the client and then the container
        WATCHDOG.watch_container(name, argv[0])  # before it exists: the watchdog's rm is harmless
        try:
            super().__init__(request, argv, env)
        except BaseException:
            WATCHDOG.forget_container(name)
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        threading.Thread(target=self._watch_client, name=f"{self.role}-client", daemon=True).start()

    def _watch_client(self) -> None:
        """Wait for the client to exit and act on it at once, whatever the worker is doing then."""
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            return  # not Linux 5.3+, or already reaped: poll() acts on the exit instead
        try:
            select.select([pidfd], [], [])  # readable once the client has exited
            # How it ended, leaving it for poll() to reap; by its pidfd, never a reused pid.
            ended = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except (AttributeError, ChildProcessError, OSError):
            return  # poll() reaped it just now (or no P_PIDFD): poll() acts on the exit itself
        finally:
            os.close(pidfd)
        if ended is not None and ended.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
            self._client_exited(-ended.si_status)

    def _client_exited(self, code: int) -> None:
        """The client ended with ``code``: when a signal ended it, the container may live on
        with its input ended and nobody reading its output. Kill it: nothing it does now can be
        seen or confirmed. Once, by whichever thread sees the exit first; the other waits."""
        with self._client_seen:
            if self._client_handled:
                return
            self._client_handled = True
            if code >= 0 or self._client_killed_by_us:
                return  # it ended with its container (or the worker is killing both)
            if self._container("kill") is None:  # it was running: an exit would say "not running"
                self.client_lost = signal.Signals(-code).name if -code in _SIGNALS else f"signal {-code}"

    def _container(self, *args: str) -> str | None:
        """Send one command to the container: None when it was done, else the engine's reason."""
        try:
            done = run_docker(*args, self.name, timeout_s=30)
        except DockerUnavailable as exc:
            self.engine_lost = True
            return str(exc)
        return None if done.returncode == 0 else done.stderr.strip() or f"exit code {done.returncode}"

    def poll(self) -> int | None:
        code = super().poll()
        if code is not None:
            self._client_exited(code)  # at once, if the watching thread has not yet
        elif self._term_pending:
            self._term_pending = self._container("kill", "--signal", "TERM") is not None
        return code

    def terminate(self) -> None:
        # With --init, docker-init passes SIGTERM to the connector, as a local SIGTERM would.
        if self._container("kill", "--signal", "TERM") is None:
            return
        # No running container yet: the client is still creating or starting it. SIGTERM to the
        # client ends it if no container exists yet; between create and start the client passes
        # the signal on to a container that cannot take it, so until one TERM reaches a running
        # container each poll sends it again (the lifecycle polls every 50 ms).
        self._term_pending = True
        if super().poll() is None:
            super().terminate()

    def kill(self) -> None:
        # The client first: a container whose output nobody reads cannot finish exiting (the
        # engine waits to deliver it), and a kill would wait for that too.
        self._client_killed_by_us = True
        super().kill()
        self._container("kill")

    def describe(self) -> str:
        return f"container {self.name} (docker run client pid {self.pid})"

    def launcher_failure(self, code: int | None, stderr_tail: str) -> FerrymanError | None:
        if self.client_lost is not None:
            return LaunchError(
                f"the docker run client of the {self.role} was killed ({self.client_lost}) while its "
                f"container {self.name} ran: the container was killed too (SIGKILL), so that it "
                "stores nothing nobody can confirm"
            )
        return launcher_failure(code, stderr_tail, self.role, self.user_settings)

    def close(self) -> None:
        super().close()
        if not REAPER.pending(self.name):  # else the reaper forgets it once it is removed
            WATCHDOG.forget_container(self.name)
        # Its working directory, and the empty mount points the engine made in it for the files.
        shutil.rmtree(self.scratch, ignore_errors=True)

    def kill_leftovers(self, warn: Callable[[str], None] | None = None) -> None:
        # --init ends whatever the connector started when it exits; the container itself may
        # still be on its way out (--rm removes it asynchronously): make sure it is gone now.
        # While the engine is removing it, rm answers "already in progress" and the container
        # is still listed: ask again until the engine says there is no such container.
        deadline = time.monotonic() + REMOVE_WAIT_S
        pause = 0.02
        while (reason := self._container("rm", "--force")) is not None:
            if self.engine_lost:  # it may live on in an engine we cannot reach now
                REAPER.remove_later(self.name)
                if warn is not None:
                    warn(
                        f"container {self.name} could not be removed ({reason}); "
                        "it is removed as soon as the engine answers again"
                    )
                break
            if "in progress" not in reason or time.monotonic() >= deadline:
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
        super().kill_leftovers(warn)


class DockerLauncher:
    def __init__(self, settings: DockerSettings | None = None) -> None:
        self.settings = settings or DockerSettings.from_env()
        self.owner = owner_label()

    def launch(self, request: LaunchRequest) -> DockerProcess:
        image = request.connector.image
        if image is None:
            raise LaunchError(f"{request.connector.ref} is not a docker: connector")
        name = container_name(image, request.job_type, request.job_id, request.attempt, request.role)
        argv, env = self.command(request, image, name)
        scratch = scratch_dir(request.workdir, name)
        scratch.mkdir(mode=0o700)
        for path in _attempt_files(request):
            # The mount point of each file: made by us, empty and private (the engine's are 0755).
            point = scratch / os.path.relpath(path, request.workdir.absolute())
            point.parent.mkdir(parents=True, exist_ok=True)
            point.touch(mode=0o600)
        process = DockerProcess(request, argv, env, name, scratch)
        process.user_settings = self.user_settings(request)
        return process

    def command(self, request: LaunchRequest, image: str, name: str) -> tuple[list[str], dict[str, str]]:
        """The ``docker run`` argv and the client's environment (values of ``-e`` come from it,
        so secrets passed as variables never show in a process list)."""
        settings = self.settings
        host_dir = str(request.workdir.absolute())
        inside = f"{CONTAINER_ROOT}/{request.job_id or 'job'}/{request.attempt}"
        argv = [docker_command(), "run", "--rm", "--init", "-i", "-w", inside, "--log-driver", "none"]
        argv += ["--name", name]
        labels = {
            MANAGED: "true",
            f"{LABEL}.owner": self.owner,
            f"{LABEL}.job-id": request.job_id,
            f"{LABEL}.attempt": str(request.attempt),
            f"{LABEL}.job-type": request.job_type,
            f"{LABEL}.role": request.role,
            **settings.labels,
        }
        for key, value in labels.items():
            argv += ["--label", f"{key}={value}"]
        if settings.network:
            argv += ["--network", settings.network]
        # Only the files its arguments name, each at its place in an empty working directory
        # of its own: the attempt dir also holds the other connector's config and the log.
        argv += ["-v", f"{scratch_dir(request.workdir, name)}:{inside}"]
        for path in _attempt_files(request):
            argv += ["-v", f"{path}:{_inside(path, host_dir, inside)}"]
        if settings.local_root is not None:
            settings.local_root.mkdir(parents=True, exist_ok=True)
            argv += ["-v", f"{settings.local_root.absolute()}:{LOCAL_MOUNT}"]
        for host, container in settings.mounts:
            argv += ["-v", f"{host}:{container}"]
        if settings.user:
            argv += ["--user", settings.user]
        variables = request.variables()
        for key in variables:
            argv += ["-e", key]
        argv += self.limits(request).docker_args()
        argv.append(image)
        argv += [_inside(arg, host_dir, inside) for arg in request.args]
        return argv, {**os.environ, **variables}

    def limits(self, request: LaunchRequest) -> ResourceLimits:
        limits = self.settings.check_limits if request.job_type.startswith("check") else self.settings.limits
        if request.connector.limits is not None:
            limits = ResourceLimits.of_connector(request.connector.limits).merged_over(limits)
        return limits

    def user_settings(self, request: LaunchRequest) -> list[UserSetting]:
        """The flags of ``docker run`` that come from the user's settings, which the engine may
        refuse (exit code 125): that is a config error naming the setting."""
        settings = self.settings
        found = self.limits(request).user_settings()
        if settings.network:
            found.append(UserSetting("--network", settings.network, "FERRYMAN_DOCKER_NETWORK", ("network",)))
        if settings.user:
            words = ("user", "passwd", "group")
            found.append(UserSetting("--user", settings.user, "FERRYMAN_DOCKER_USER", words))
        if settings.local_root is not None:
            root = str(settings.local_root.absolute())
            found.append(UserSetting("-v", root, "FERRYMAN_DOCKER_LOCAL_ROOT", (root.lower(),)))
        return found


def _attempt_files(request: LaunchRequest) -> list[str]:
    """The files of the attempt dir that the request's arguments name."""
    host_dir = str(request.workdir.absolute())
    return [arg for arg in request.args if arg.startswith(host_dir + os.sep) and os.path.isfile(arg)]


def scratch_dir(workdir: Path, name: str) -> Path:
    """The host directory a container works in: in the attempt dir, gone when it ends."""
    return workdir.absolute() / f"{SCRATCH_PREFIX}{name}"


def _inside(arg: str, host_dir: str, inside: str) -> str:
    """An argument naming a file of the attempt dir, as the container sees it."""
    if arg == host_dir:
        return inside
    if arg.startswith(host_dir + os.sep):
        return inside + arg[len(host_dir) :]
    return arg


def list_containers(filters: Iterable[str] = ()) -> list[tuple[str, dict[str, str]]]:
    """(name, labels) of every ferryman container, running or not, matching the label filters."""
    args = ["ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={MANAGED}"]
    for item in filters:
        args += ["--filter", f"label={item}"]
    ids = run_docker(*args).stdout.split()
    if not ids:
        return []
    done = run_docker("inspect", "--format", "{{.Name}} {{json .Config.Labels}}", *ids)
    found = []
    for line in done.stdout.splitlines():
        name, _, labels = line.partition(" ")
        with contextlib.suppress(ValueError):
            found.append((name.lstrip("/"), json.loads(labels) or {}))
    return found


def remove_containers(names: Iterable[str]) -> list[str]:
    names = list(names)
    if names:
        run_docker("rm", "--force", *names)
    return names


def remove_orphans(attempt_running: Callable[[dict[str, str]], bool | None] | None = None) -> list[str]:
    """Remove ferryman containers nobody will stop: their owner process on this host is gone, or
    ``attempt_running(labels)`` says their attempt is over (None: not one of that store's)."""
    orphans = []
    for name, labels in list_containers():
        running = attempt_running(labels) if attempt_running is not None else None
        alive = owner_alive(labels.get(f"{LABEL}.owner", ""))
        if running is False or (running is None and alive is False):
            orphans.append(name)
    return remove_containers(orphans)
