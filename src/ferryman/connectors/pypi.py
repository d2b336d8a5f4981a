"""PyPI connectors, each installed once into its own managed virtualenv.

Layout of the venvs directory (``FERRYMAN_HOME/venvs``)::

    airbyte-source-faker-7.2.1/           a complete venv: it holds ferryman-connector.json
    .staging-airbyte-source-faker-x1y2/   an install in progress, or the remains of a crashed one
    .airbyte-source-faker.lock            serialises installs of one package across processes
    airbyte-source-faker-install.log      what venv and pip printed during the last install

A venv is built in a staging directory, checked (the connector's entry point must import),
given its marker file and only then renamed into place, so a directory that has a marker is
always a complete install and a directory without one is ignored. A venv survives the rename
because its interpreter finds ``pyvenv.cfg`` next to itself; console scripts would not (their
shebang names the staging path), so connectors are started as
``<venv>/bin/python -c <launcher>``, the launcher importing and calling the entry point.
"""

from __future__ import annotations

import fcntl
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ferryman.errors import ConnectorInstallError

log = logging.getLogger(__name__)

MARKER = "ferryman-connector.json"
STAGING_PREFIX = ".staging-"
STALE_STAGING_S = 3600.0
EXAMPLE = "pypi:airbyte-source-faker"

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_VERSION_TEXT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
_PIP_INSTALL = ("-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet")
_CONNECTOR_SCRIPT = re.compile(r"^(source|destination)-")
_IDENTIFIER_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

# Printed as JSON by the venv's interpreter: the installed version and its console scripts.
_INSPECT = """\
import importlib.metadata as md, json, sys
dist = md.distribution(sys.argv[1])
scripts = {e.name: e.value for e in dist.entry_points if e.group == "console_scripts"}
print(json.dumps({"version": dist.version, "scripts": scripts}))
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


def ensure_installed(name: str, version: str | None, venvs_dir: Path) -> InstalledConnector:
    """Return the venv of ``name`` (``==version`` if given), installing it from PyPI if needed.

    Without a version, an installed venv of the package is reused (the newest if several);
    only when there is none is the latest release installed.
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
    with _install_lock(venvs_dir, name):
        # Another process may have installed it while we waited for the lock.
        found = _find(name, version, venvs_dir)
        if found is not None:
            return found
        _remove_stale_staging(venvs_dir)
        return _install(name, version, venvs_dir)


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


# --- versions -------------------------------------------------------------------------------

_RELEASE = re.compile(r"^(?:(\d+)!)?(\d+(?:\.\d+)*)(.*)$")
_TAG = re.compile(r"^[._-]?([a-z]+)[._-]?(\d*)")
_FINAL = 4
# dev < alpha < beta < release candidate < final release < post release
_TAG_RANK = dict(dev=0, a=1, alpha=1, b=2, beta=2, c=3, rc=3, pre=3, preview=3, post=5, rev=5, r=5)

VersionKey = tuple[int, int, tuple[int, ...], int, int, str]


def version_key(version: str) -> VersionKey:
    """A sort key close to PEP 440 order that never fails (``packaging`` is not a dependency).

    ``1.10.0`` sorts after ``1.9.0``, ``1.0`` equals ``1.0.0``, ``1.0rc1`` sorts before ``1.0``
    and ``1.0.post1`` after it. Strings that are not versions at all sort before every version.
    """
    text, _, local = version.strip().lower().removeprefix("v").partition("+")
    match = _RELEASE.match(text)
    if match is None:
        return (0, 0, (), 0, 0, version)
    release = tuple(int(part) for part in match[2].split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    rest = match[3]
    rank, number = _FINAL, 0
    if rest:
        tag = _TAG.match(rest)
        if tag is not None and tag[1] in _TAG_RANK:
            rank, number, rest = _TAG_RANK[tag[1]], int(tag[2] or 0), rest[tag.end() :]
        else:
            rank = 0
    extra = rest + ("+" + local if local else "")
    return (1, int(match[1] or 0), release, rank, number, extra)


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

    Candidates are scripts named ``source-*`` or ``destination-*``; the one named like the
    package without its ``airbyte-`` prefix wins (``airbyte-source-faker`` -> ``source-faker``).
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
def _install_lock(venvs_dir: Path, name: str) -> Iterator[None]:
    with (venvs_dir / f".{name}.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process that is installing %s", name)
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


def _install(name: str, version: str | None, venvs_dir: Path) -> InstalledConnector:
    requirement = f"{name}=={version}" if version else name
    log_path = venvs_dir / f"{name}-install.log"
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}-", dir=venvs_dir))
    log.info("installing %s from PyPI into %s", requirement, venvs_dir)
    try:
        with log_path.open("w", encoding="utf-8") as transcript:
            made = _run([sys.executable, "-m", "venv", str(staging)], transcript)
            if made.returncode != 0:
                raise ConnectorInstallError(
                    f"could not create a virtualenv for {name} with {sys.executable}: "
                    f"{_last_line(made.stdout, made.returncode)}",
                    log=log_path,
                )
            python = staging / "bin" / "python"
            pip = _run([str(python), *_PIP_INSTALL, requirement], transcript)
            if pip.returncode != 0:
                message, show_log = pip_failure(name, version, pip.stdout, pip.returncode)
                raise ConnectorInstallError(message, log=log_path if show_log else None)
            installed_version, scripts = _inspect(python, name, transcript, log_path)
            chosen = choose_entry_point(name, scripts)
            if chosen is None:
                raise ConnectorInstallError(
                    f"package {name} installed but has no connector entry point (a console "
                    "script named source-* or destination-*); is it an Airbyte connector?"
                )
            script, entry_point = chosen
            verified = _run([str(python), "-c", _VERIFY, entry_point], transcript)
            if verified.returncode != 0:
                raise ConnectorInstallError(
                    f"package {name} installed but its entry point {entry_point} does not load: "
                    f"{_last_line(verified.stdout, verified.returncode)}",
                    log=log_path,
                )
            _write_marker(staging, name, installed_version, script, entry_point, requirement)
        final = venvs_dir / f"{name}-{installed_version}"
        _move_into_place(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("installed %s %s into %s", name, installed_version, final)
    installed = _load(final)
    if installed is None:
        raise ConnectorInstallError(f"{final} vanished right after it was installed; try again")
    return installed


def _run(command: list[str], transcript: IO[str]) -> subprocess.CompletedProcess[str]:
    """Run ``command``, its stdout and stderr captured together and copied to the transcript."""
    transcript.write("$ " + " ".join(command) + "\n")
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        check=False,
    )
    transcript.write(f"{result.stdout}[exit code {result.returncode}]\n\n")
    transcript.flush()
    return result


def _inspect(python: Path, name: str, transcript: IO[str], log_path: Path) -> tuple[str, dict[str, str]]:
    result = _run([str(python), "-c", _INSPECT, name], transcript)
    try:
        found: Any = json.loads(result.stdout.strip().splitlines()[-1])
        version, scripts = found["version"], found["scripts"]
    except (ValueError, IndexError, KeyError, TypeError):
        raise ConnectorInstallError(
            f"package {name} installed but its metadata cannot be read: "
            f"{_last_line(result.stdout, result.returncode)}",
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


# --- pip's errors as one line ---------------------------------------------------------------

_NOT_FOUND = ("No matching distribution found", "Could not find a version that satisfies")
_NETWORK = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Max retries exceeded|"
    r"ProxyError|SSLError|ConnectTimeoutError|ReadTimeoutError|Temporary failure in name "
    r"resolution|Name or service not known|Network is unreachable"
)
_AVAILABLE = re.compile(r"\(from versions: ([^)]*)\)")
_OTHER_PYTHON = "require a different python version"


def pip_failure(name: str, version: str | None, output: str, code: int) -> tuple[str, bool]:
    """One line that says what went wrong in a failed ``pip install``, and what to do.

    Returns the line and whether the full pip output (the install log) is worth a look.
    """
    requirement = f"{name}=={version}" if version else name
    if any(phrase in output for phrase in _NOT_FOUND):
        listed = _AVAILABLE.search(output)
        available = [] if listed is None else [v.strip() for v in listed[1].split(",")]
        available = [v for v in available if v and v != "none"]
        if not available and _NETWORK.search(output):
            return (
                f"could not reach the package index to install {requirement}: check the "
                "network connection, proxy settings or PIP_INDEX_URL",
                True,
            )
        if _OTHER_PYTHON in output:
            python = ".".join(map(str, sys.version_info[:2]))
            return (
                f"{requirement} does not support Python {python}, which runs ferryman: pin a "
                f"version that does (pypi:{name}==VERSION) or run ferryman with another Python",
                True,
            )
        if version and available:
            latest = max(available, key=version_key)
            return (
                f"PyPI has package {name} but no version {version}: pick an existing one, "
                f"e.g. pypi:{name}=={latest}",
                False,
            )
        missing = f"{name} (or no version {version})" if version else name
        return f"PyPI has no package {missing}: check the name, e.g. {EXAMPLE}", False
    errors = [
        line.strip().removeprefix("ERROR:").strip()
        for line in output.splitlines()
        if line.strip().startswith("ERROR:")
    ]
    # pip closes a dependency conflict with a generic "ResolutionImpossible" line; the line
    # before it names the conflict.
    useful = [e for e in errors if e and not e.startswith("ResolutionImpossible")] or errors
    reason = useful[-1] if useful else _last_line(output, code)
    return f"pip could not install {requirement}: {reason}", True


def _last_line(output: str, code: int) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {code}"
