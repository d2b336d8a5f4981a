"""Connector references, as a user writes them.

pypi:NAME[==VERSION]    installed once into a managed venv under FERRYMAN_HOME/venvs
exec:PATH               a local executable
builtin:NAME            one of Ferryman's connectors (``ferryman connectors`` lists them)
docker:IMAGE[:TAG]      a Docker image, present locally or pulled on first use
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ferryman.errors import ConnectorReferenceError

BUILTIN_MODULES = {
    "source-bench": "ferryman.builtin.source_bench",
    "source-empty": "ferryman.builtin.source_empty",
    "destination-duckdb": "ferryman.builtin.destination_duckdb",
    "destination-postgres": "ferryman.builtin.destination_postgres",
    "destination-jsonl": "ferryman.builtin.destination_jsonl",
    "destination-devnull": "ferryman.builtin.destination_devnull",
}

KINDS = ("pypi", "exec", "builtin", "docker")
_PYPI_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9.+!_-]+$")


@dataclass(frozen=True)
class ConnectorRef:
    kind: str
    name: str
    version: str | None = None

    def __str__(self) -> str:
        suffix = f"=={self.version}" if self.version else ""
        return f"{self.kind}:{self.name}{suffix}"


@dataclass(frozen=True)
class ResolvedConnector:
    """A connector ready to launch: the command that precedes ``spec``, ``read`` and the rest."""

    ref: ConnectorRef
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    # Where immutable facts about this connector (its spec) may be cached; None = do not cache.
    cache_dir: Path | None = None
    # The image of a docker: connector (repository:tag); None for a local process.
    image: str | None = None
    # Per-connector container limits (memory_limit, memory_request, cpu_limit), over the defaults.
    limits: dict[str, str] | None = None

    @property
    def display_image(self) -> str:
        """What Airbyte passes as WORKER_CONNECTOR_IMAGE: the image, or our reference."""
        return self.image or str(self.ref)


def parse_reference(text: str) -> ConnectorRef:
    kind, sep, rest = text.partition(":")
    if not sep or kind not in KINDS or not rest:
        raise ConnectorReferenceError(
            f"connector reference {text!r} is not valid: write pypi:NAME[==VERSION], "
            "exec:PATH, builtin:NAME or docker:IMAGE[:TAG]"
        )
    if kind == "pypi":
        name, _, version = rest.partition("==")
        if not _PYPI_NAME.match(name) or (version and not _VERSION.match(version)):
            raise ConnectorReferenceError(
                f"{text!r} is not a valid PyPI reference: write pypi:NAME or pypi:NAME==VERSION"
            )
        return ConnectorRef("pypi", name.lower().replace("_", "-"), version or None)
    if kind == "docker":
        from ferryman.connectors.docker import parse_image

        return ConnectorRef("docker", parse_image(rest).reference)
    if kind == "builtin" and rest not in BUILTIN_MODULES:
        known = ", ".join(sorted(BUILTIN_MODULES))
        raise ConnectorReferenceError(f"unknown built-in connector {rest!r}: choose one of {known}")
    return ConnectorRef(kind, rest)


def resolve(ref: ConnectorRef, venvs_dir: Path, cancel: threading.Event | None = None) -> ResolvedConnector:
    """Turn a reference into a command, installing a PyPI connector on first use; a docker
    image is pulled if the engine lacks it (stopped if ``cancel`` is set meanwhile)."""
    if ref.kind == "builtin":
        return ResolvedConnector(ref, [sys.executable, "-m", BUILTIN_MODULES[ref.name]])
    if ref.kind == "exec":
        return ResolvedConnector(ref, [_executable(ref.name)])
    if ref.kind == "pypi":
        from ferryman.connectors.pypi import ensure_installed

        installed = ensure_installed(ref.name, ref.version, venvs_dir, cancel)
        return ResolvedConnector(
            ConnectorRef("pypi", ref.name, installed.version),
            installed.command,
            cache_dir=installed.venv,
        )
    if ref.kind == "docker":
        from ferryman.connectors.docker import ensure_image, parse_image

        image = parse_image(ref.name)
        identity = ensure_image(image, cancel).removeprefix("sha256:")[:32]
        # An image id names its content, so facts about it (its spec) can be kept next to the venvs.
        return ResolvedConnector(
            ref, [], cache_dir=venvs_dir.parent / "images" / identity, image=image.reference
        )
    raise ConnectorReferenceError(f"{ref}: unknown connector kind {ref.kind!r}")


def pin_reference(text: str, venvs_dir: Path) -> str:
    """``text`` as it should be stored: an unversioned ``pypi:NAME`` becomes ``pypi:NAME==V``,
    V the version installed now (installing it if needed), so a configured connector never
    changes version behind its user's back; any other reference is returned as given."""
    ref = parse_reference(text)
    if ref.kind != "pypi" or ref.version is not None:
        return text
    return str(resolve(ref, venvs_dir).ref)


def _executable(path: str) -> str:
    found = shutil.which(path) if os.sep not in path else path
    if found is not None and os.path.isdir(found):
        raise ConnectorReferenceError(f"exec:{path} is a directory; give a path to an executable file")
    if found is None or not os.path.isfile(found):
        raise ConnectorReferenceError(f"exec:{path}: no such file; give a path to an executable")
    if not os.access(found, os.X_OK):
        raise ConnectorReferenceError(f"exec:{path}: the file is not executable; run chmod +x on it")
    return os.path.abspath(found)


_BUILTIN_SLUGS = {"destination-devnull": "dev-null"}  # Airbyte's slug for the same thing


def definition_slug(connector: str) -> tuple[str | None, str]:
    """The kind ("source", "destination" or None when the name does not tell) and the slug a
    reference is known by in the HTTP API: ``pypi:airbyte-source-faker==7.2.1`` is a source,
    ``faker``; ``docker:airbyte/destination-postgres:2.0`` a destination, ``postgres``."""
    kind, _, rest = connector.partition(":")
    name = rest.split("==")[0]
    if kind == "docker":
        name = name.rsplit("/", 1)[-1].split(":")[0].split("@")[0]
    elif kind == "exec":
        name = Path(name).stem
    if kind == "builtin" and name in _BUILTIN_SLUGS:
        return "destination", _BUILTIN_SLUGS[name]
    name = name.lower().removeprefix("airbyte-")
    for side in ("source", "destination"):
        for mark in (f"{side}-", f"{side}_"):
            if name.startswith(mark):
                return side, name[len(mark) :] or name
    return None, name
