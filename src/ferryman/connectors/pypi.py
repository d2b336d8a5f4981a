"""PyPI connectors, each installed once into its own managed virtualenv.

Layout of the venvs directory (``FERRYMAN_HOME/venvs``)::

    airbyte-source-faker-7.2.1/           a complete venv: it holds ferryman-connector.json
    .staging-airbyte-source-faker-x1y2/   an install in progress, or the remains of a crashed one
    .airbyte-source-faker.lock            serialises installs of one package across processes
    airbyte-source-faker-install.log      what venv and pip printed during the last install

A venv is built in a staging directory, checked (the connector's entry point must import),
given its marker file and only then renamed into place, so a directory that has a marker is
always a complete install and a directory without one is ignored. Its final name holds the
version pip chose, known only after the install, so the scripts in ``bin/`` (whose shebang
and ``activate`` name the staging path) are rewritten to the final path before the rename:
``<venv>/bin/pip`` or ``<venv>/bin/source-faker`` run by hand work. Ferryman itself starts a
connector as ``<venv>/bin/python -c <launcher>``, the launcher importing and calling the entry
point, so it never depends on a script.

The entry point is read from the installed distribution's metadata: its console scripts named
``source-*``, ``destination-*``, ``airbyte-source-*`` or ``airbyte-destination-*``.
An install reports its steps (``install_progress``); a failed pip is reported in its own
words (``pip_errors``).

pip and whatever it starts (a package's build, a compiler) run in a process group of their own
under a small guard (``_GUARD``) that holds the read end of a pipe only this process writes to:
when this process dies, even by SIGKILL, the pipe ends and the guard kills the group, so no pip
goes on building into a staging directory nobody will use. A Ctrl-C ends the group too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ferryman.connectors.install_progress import InstallProgress, start_progress
from ferryman.connectors.pip_errors import EXAMPLE, pip_failure
from ferryman.connectors.versions import version_key
from ferryman.errors import ConnectorInstallError, LaunchError

MARKER = "ferryman-connector.json"
STAGING_PREFIX = ".staging-"
STALE_STAGING_S = 3600.0

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_VERSION_TEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
# Not --quiet: the install log keeps pip's whole story, and its "Collecting" lines feed the spinner.
_CANCEL_POLL_S = 0.1  # how soon an install notices its job's cancel
_PIP_INSTALL = ("-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off")
_CONNECTOR_SCRIPT = re.compile(r"^(airbyte-)?(source|destination)-")
_COLLECTING = re.compile(r"^Collecting ([A-Za-z0-9._-]+)")
_IDENTIFIER_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

# Printed as JSON by the venv's interpreter: the installed version and its console scripts.
_INSPECT = """\
import importlib.metadata as md, json, sys
dist = md.distribution(sys.argv[1])
scripts = {e.name: e.value for e in dist.entry_points if e.group == "console_scripts"}
print(json.dumps({"version": dist.version, "scripts": scripts}))
"""

# Runs argv[2:] as its child in the guard's own process group and exits with its code; kills the
# group when the pipe whose read end is fd argv[1] ends (the Ferryman process is gone).
_GUARD = """\
import os, signal, subprocess, sys, threading
fd = int(sys.argv[1])
os.set_inheritable(fd, False)
child = subprocess.Popen(sys.argv[2:])
def watch():
    while os.read(fd, 1):
        pass
    os.killpg(0, signal.SIGKILL)
threading.Thread(target=watch, daemon=True).start()
code = child.wait()
sys.exit(code if code >= 0 else 128 - code)
"""

# Imports the entry point given as argv[1] and checks that it is callable.
_VERIFY = """\
import functools, importlib, sys
module, _, attrs = sys.argv[1].partition(":")
target = functools.reduce(getattr, attrs.split("."), importlib.import_module(module))
if not callable(target):
    sys.exit(f"{sys.argv[1]} is not callable")
"""


@dataclass(frozen=True)
class InstalledConnector:
    name: str
    version: str
    venv: Path
    # argv prefix that runs the connector; append "spec", "check --config x", ...
    command: list[str]


def ensure_installed(
    name: str, version: str | None, venvs_dir: Path, cancel: threading.Event | None = None
) -> InstalledConnector:
    """Return the venv of ``name`` (``==version`` if given), installing it from PyPI if needed.

    Without a version, an installed venv of the package is reused (the newest if several);
    only when there is none is the latest release installed. A ``cancel`` set while it installs
    stops the install (a LaunchError saying so) and leaves nothing of it.
    """
    if not _NAME.match(name):
        raise ConnectorInstallError(f"{name!r} is not a valid PyPI package name; e.g. {EXAMPLE}")
    if version is not None and not _VERSION_TEXT.match(version):
        raise ConnectorInstallError(
            f"{version!r} is not a valid version of {name}; write e.g. {EXAMPLE}==7.2.1"
        )
    name = canonical_name(name)
    venvs_dir = venvs_dir.expanduser().absolute()
    found = _find(name, version, venvs_dir)
    if found is not None:
        return found
    venvs_dir.mkdir(parents=True, exist_ok=True)
    progress = start_progress(f"pypi:{name}" + (f"=={version}" if version else ""))
    outcome: str | None = None
    try:
        with _install_lock(venvs_dir, name, progress):
            # Another process may have installed it while we waited for the lock.
            found = _find(name, version, venvs_dir)
            if found is not None:
                outcome = f"{found.version} was installed by another process meanwhile"
                return found
            _remove_stale_staging(venvs_dir)
            started = time.monotonic()
            installed = _install(name, version, venvs_dir, progress, cancel)
            seconds = time.monotonic() - started
            outcome = f"installed {installed.version} in {seconds:.0f}s into {installed.venv}"
            return installed
    finally:
        progress.finish(outcome)


def list_installed(venvs_dir: Path) -> list[InstalledConnector]:
    """Complete installs in ``venvs_dir``, by package name and then oldest to newest version."""
    venvs_dir = venvs_dir.expanduser().absolute()
    if not venvs_dir.is_dir():
        return []
    found = [
        connector
        for child in venvs_dir.iterdir()
        if not child.name.startswith(".") and (connector := _load(child)) is not None
    ]
    found.sort(key=lambda c: (c.name, version_key(c.version)))
    return found


def canonical_name(name: str) -> str:
    """PyPI's normal form of a project name (PEP 503): lower case, runs of ``-_.`` as ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- finding installs -----------------------------------------------------------------------


def _find(name: str, version: str | None, venvs_dir: Path) -> InstalledConnector | None:
    if version is not None:
        exact = _load(venvs_dir / f"{name}-{version}")
        if exact is not None and exact.name == name:
            return exact
    candidates = [c for c in list_installed(venvs_dir) if c.name == name]
    if version is not None:
        wanted = version_key(version)
        candidates = [c for c in candidates if version_key(c.version) == wanted]
    return candidates[-1] if candidates else None


def _load(venv: Path) -> InstalledConnector | None:
    """The connector installed in ``venv``, or None if the directory is not a complete install."""
    try:
        marker = json.loads((venv / MARKER).read_text(encoding="utf-8"))
        name, version = marker["name"], marker["version"]
        script, entry_point = marker["script"], marker["entry_point"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(v, str) for v in (name, version, script, entry_point)):
        return None
    if _split_entry_point(entry_point) is None:
        return None
    python = venv / "bin" / "python"
    if not python.exists():  # e.g. the interpreter the venv was made from is gone
        return None
    return InstalledConnector(name, version, venv, launch_command(python, script, entry_point))


def launch_command(python: Path, script: str, entry_point: str) -> list[str]:
    """``python -c <launcher>``: runs ``module:attr`` as its console script would.

    The connector's arguments follow the launcher and reach it as ``sys.argv[1:]``;
    ``sys.argv[0]`` becomes the script's name, and the working directory is taken off
    ``sys.path`` so files there cannot shadow the connector's modules.
    """
    parts = _split_entry_point(entry_point)
    if parts is None:
        raise ValueError(f"{entry_point!r} is not an entry point of the form module:attr")
    module, attrs = parts
    launcher = (
        "import functools,importlib,sys;"
        "sys.path[:1]=[p for p in sys.path[:1] if p];"
        f"sys.argv[0]={script!r};"
        f"sys.exit(functools.reduce(getattr,{attrs!r},importlib.import_module({module!r}))())"
    )
    return [str(python), "-c", launcher]


def choose_entry_point(name: str, scripts: Mapping[str, str]) -> tuple[str, str] | None:
    """The console script that runs the connector, as ``(script, "module:attr")``.

    Candidates are scripts named ``source-*`` or ``destination-*``, with or without an
    ``airbyte-`` prefix; the one named like the package without its ``airbyte-`` prefix wins
    (``airbyte-source-faker`` -> ``source-faker``), then the one named like the package.
    """
    candidates = {
        script: value.split("[")[0].replace(" ", "")
        for script, value in scripts.items()
        if _CONNECTOR_SCRIPT.match(script) and _split_entry_point(value) is not None
    }
    if not candidates:
        return None
    for preferred in (name.removeprefix("airbyte-"), name):
        if preferred in candidates:
            return preferred, candidates[preferred]
    script = sorted(candidates)[0]
    return script, candidates[script]


def _split_entry_point(value: str) -> tuple[str, list[str]] | None:
    module, _, attrs = value.split("[")[0].replace(" ", "").partition(":")
    if not _IDENTIFIER_PATH.match(module) or not _IDENTIFIER_PATH.match(attrs):
        return None
    return module, attrs.split(".")


# --- installing -----------------------------------------------------------------------------


@contextmanager
def _install_lock(venvs_dir: Path, name: str, progress: InstallProgress) -> Iterator[None]:
    with (venvs_dir / f".{name}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress.step(f"waiting for another process that is installing {name}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_stale_staging(venvs_dir: Path) -> None:
    """Best effort: delete staging directories left by installs that died over an hour ago."""
    cutoff = time.time() - STALE_STAGING_S
    for child in venvs_dir.glob(STAGING_PREFIX + "*"):
        try:
            if child.is_dir() and child.lstat().st_mtime < cutoff:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:
            pass


def _install(
    name: str,
    version: str | None,
    venvs_dir: Path,
    progress: InstallProgress,
    cancel: threading.Event | None = None,
) -> InstalledConnector:
    requirement = f"{name}=={version}" if version else name
    log_path = venvs_dir / f"{name}-install.log"
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}-", dir=venvs_dir))
    try:
        with log_path.open("w", encoding="utf-8") as transcript:
            progress.step("creating a virtualenv")
            # The prompt of bin/activate would name the staging directory.
            made = _run(
                [sys.executable, "-m", "venv", "--prompt", name, str(staging)], transcript, cancel=cancel
            )
            if made.returncode != 0:
                raise ConnectorInstallError(
                    f"could not create a virtualenv for {name} with {sys.executable}: "
                    f"{_last_line(made.stderr or made.stdout, made.returncode)}",
                    log=log_path,
                )
            python = staging / "bin" / "python"
            progress.step("pip install, with dependencies (a minute or more)")
            pip = _run([str(python), *_PIP_INSTALL, requirement], transcript, _pip_detail(progress), cancel)
            if pip.returncode != 0:
                raise ConnectorInstallError(pip_failure(name, version, pip.stderr, pip.returncode, log_path))
            installed_version, script, entry_point = _entry_point(python, name, transcript, log_path)
            progress.step(f"checking that {installed_version}'s entry point {script} loads")
            verified = _run([str(python), "-c", _VERIFY, entry_point], transcript, cancel=cancel)
            if verified.returncode != 0:
                raise ConnectorInstallError(
                    f"package {name} installed but its entry point {entry_point} does not load: "
                    f"{_last_line(verified.stderr, verified.returncode)}",
                    log=log_path,
                )
            final = venvs_dir / f"{name}-{installed_version}"
            _relocate_scripts(staging, final)
            _write_marker(staging, name, installed_version, script, entry_point, requirement)  # last
        _move_into_place(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    installed = _load(final)
    if installed is None:
        raise ConnectorInstallError(f"{final} vanished right after it was installed; try again")
    return installed


def _pip_detail(progress: InstallProgress) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        collecting = _COLLECTING.match(line)
        if collecting is not None:
            progress.detail(f"collecting {collecting[1]}")
        elif line.startswith("Installing collected packages"):
            progress.detail("installing the collected packages")

    return on_line


def _entry_point(python: Path, name: str, transcript: IO[str], log_path: Path) -> tuple[str, str, str]:
    """The installed version, and the script and entry point that run the connector."""
    installed_version, scripts = _inspect(python, name, transcript, log_path)
    chosen = choose_entry_point(name, scripts)
    if chosen is None:
        found = ", ".join(sorted(scripts)) or "none"
        raise ConnectorInstallError(
            f"package {name} installed but has no connector entry point (a console script named "
            f"source-*, destination-*, airbyte-source-* or airbyte-destination-*; it has: {found}); "
            "is it an Airbyte connector?"
        )
    return installed_version, *chosen


def _relocate_scripts(staging: Path, final: Path) -> None:
    """Point the venv's scripts (shebangs, ``activate``) and ``pyvenv.cfg`` at ``final``."""
    old, new = str(staging).encode(), str(final).encode()
    for path in [*(staging / "bin").iterdir(), staging / "pyvenv.cfg"]:
        if path.is_symlink() or not path.is_file():
            continue  # bin/python and its aliases are links to the base interpreter
        content = path.read_bytes()
        if old in content:
            path.write_bytes(content.replace(old, new))  # write_bytes keeps the file's mode


@dataclass(frozen=True)
class _Finished:
    returncode: int
    stdout: str
    stderr: str


def _run(
    command: list[str],
    transcript: IO[str],
    on_line: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> _Finished:
    """Run ``command``; its stdout goes to the transcript as it comes (and line by line to
    ``on_line``), its stderr is kept apart, for the error message, and appended after. A
    ``cancel`` set meanwhile kills it and its children (a terminal's Ctrl-C is not for them: it
    cancels the job that installs, which lands here) and raises a LaunchError."""
    transcript.write("$ " + " ".join(command) + "\n")
    transcript.flush()
    lines: list[str] = []
    # stderr to a file, not a pipe: a full stderr pipe would block pip while stdout is read.
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errors:
        alive_read, alive_write = os.pipe()  # the guard's: ends when this process does
        try:
            process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _GUARD, str(alive_read), *command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                errors="replace",
                pass_fds=(alive_read,),
                start_new_session=True,  # the group the guard kills; a Ctrl-C is for us
            )
        finally:
            os.close(alive_read)
        if cancel is not None:
            threading.Thread(target=_stop_on_cancel, args=(process, cancel), daemon=True).start()
        try:
            assert process.stdout is not None
            for line in process.stdout:
                transcript.write(line)
                lines.append(line)
                if on_line is not None:
                    on_line(line)
            code = process.wait()
        finally:
            if process.poll() is None:  # interrupted (Ctrl-C): leave no pip, and no build, behind
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            os.close(alive_write)
        errors.seek(0)
        stderr = errors.read()
    transcript.write(f"{stderr}[exit code {code}]\n\n")
    transcript.flush()
    if cancel is not None and cancel.is_set() and code != 0:
        raise LaunchError(f"the install was stopped: the job was cancelled ({command[-1]})")
    return _Finished(code, "".join(lines), stderr)


def _stop_on_cancel(process: subprocess.Popen[str], cancel: threading.Event) -> None:
    """Kill the guard's group (the command and what it started) once ``cancel`` is set."""
    while process.poll() is None:
        if cancel.wait(_CANCEL_POLL_S):
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            return


def _inspect(python: Path, name: str, transcript: IO[str], log_path: Path) -> tuple[str, dict[str, str]]:
    result = _run([str(python), "-c", _INSPECT, name], transcript)
    try:
        found: Any = json.loads(result.stdout.strip().splitlines()[-1])
        version, scripts = found["version"], found["scripts"]
    except (ValueError, IndexError, KeyError, TypeError):
        raise ConnectorInstallError(
            f"package {name} installed but its metadata cannot be read: "
            f"{_last_line(result.stderr, result.returncode)}",
            log=log_path,
        ) from None
    return str(version), {str(k): str(v) for k, v in dict(scripts).items()}


def _write_marker(
    venv: Path, name: str, version: str, script: str, entry_point: str, requirement: str
) -> None:
    marker = {
        "name": name,
        "version": version,
        "script": script,
        "entry_point": entry_point,
        "requirement": requirement,
        "python": ".".join(map(str, sys.version_info[:3])),
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (venv / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _move_into_place(staging: Path, final: Path) -> None:
    if _load(final) is None:
        shutil.rmtree(final, ignore_errors=True)  # an incomplete or broken install, if any
        try:
            staging.rename(final)
            return
        except OSError:
            if _load(final) is None:
                raise
    shutil.rmtree(staging, ignore_errors=True)  # a complete install is already there: keep it


def _last_line(output: str, code: int) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {code}"
