"""The watchdog process: stops the connectors of a Ferryman process that died without stopping them.

Run by :mod:`ferryman.launchers.watchdog` as ``python -I -S <this file>``, standard library only,
so it starts in a few milliseconds and imports nothing of Ferryman's. It reads lines on stdin,
a pipe whose only writer is the Ferryman process that started it:

    + group PID START            a local connector's process group (START: its leader's start
                                 time, field 22 of /proc/PID/stat, so a reused PID is spared)
    - group PID                  that group ended normally
    + container NAME DOCKER      a container, and the docker command to stop it with
    - container NAME

When the pipe ends (the Ferryman process exited, however it exited) with entries still listed,
the process died with connectors running: it sends each SIGTERM (``docker kill --signal TERM``
for a container), waits up to ``FERRYMAN_CANCEL_GRACE_S`` seconds (10) for them to end, then
kills what is left (SIGKILL to the group, ``docker rm --force``). It then exits. A Ferryman
process that ended normally has removed every entry, and the watchdog exits at once.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time

POLL_S = 0.2


def start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return "?"


def group_alive(pid: int) -> bool:
    """Whether a process of group ``pid`` still runs (zombies do not count: with us as their
    only witness, nobody may ever reap them)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        entries = None
    if entries is None:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pid).encode() and fields[0] != b"Z":
            return True
    return False


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def docker(command: str, *args: str) -> bool:
    """Run one docker command; True when it succeeded."""
    try:
        done = subprocess.run(
            [command, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def container_running(command: str, name: str) -> bool:
    try:
        done = subprocess.run(
            [command, "inspect", "--format", "{{.State.Running}}", name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == "true"


def read_entries() -> tuple[dict[int, str], dict[str, str]]:
    """Follow the pipe to its end; what is still listed then."""
    groups: dict[int, str] = {}
    containers: dict[str, str] = {}
    for raw in sys.stdin.buffer:
        parts = raw.decode("utf-8", "replace").split()
        if len(parts) < 3:
            continue
        op, kind, key = parts[0], parts[1], parts[2]
        if kind == "group" and key.isdigit():
            if op == "+" and len(parts) >= 4:
                groups[int(key)] = parts[3]
            elif op == "-":
                groups.pop(int(key), None)
        elif kind == "container":
            if op == "+" and len(parts) >= 4:
                containers[key] = " ".join(parts[3:])
            elif op == "-":
                containers.pop(key, None)
    return groups, containers


def grace_s() -> float:
    try:
        return max(0.0, float(os.environ.get("FERRYMAN_CANCEL_GRACE_S", "10")))
    except ValueError:
        return 10.0


def stop(groups: dict[int, str], containers: dict[str, str]) -> None:
    # Only groups whose leader is still the process that was registered, or whose leader is gone
    # while members live on (the group id cannot be reused while the group exists).
    mine = [pid for pid, started in groups.items() if start_time(pid) in (started, "?") and group_alive(pid)]
    for pid in mine:
        signal_group(pid, signal.SIGTERM)
    for name, command in containers.items():
        docker(command, "kill", "--signal", "TERM", name)
    deadline = time.monotonic() + grace_s()
    while time.monotonic() < deadline:
        mine = [pid for pid in mine if group_alive(pid)]
        waiting = [name for name, command in containers.items() if container_running(command, name)]
        if not mine and not waiting:
            break
        time.sleep(POLL_S)
    for pid in mine:
        signal_group(pid, signal.SIGKILL)
    for name, command in containers.items():
        docker(command, "rm", "--force", name)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the Ferryman process
    groups, containers = read_entries()
    if groups or containers:
        stop(groups, containers)


if __name__ == "__main__":
    main()
