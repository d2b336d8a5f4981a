"""Relative file paths in a config that is about to be stored.

A stored config is used by whichever process runs its jobs, started in whichever directory: a
relative path that works from the directory the user was in when creating it would not work
from a ``ferryman worker`` started elsewhere. So when an actor is created, a relative path is
made absolute against the creator's directory, or refused when it can never work:

* built-in connectors: their path fields are known (``path``), and always made absolute;
* other connectors: a spec rarely says which field is a path, so only a string that is clearly
  one is touched: under a key named like a path (``path``, ``file``, ``url``, ``*_path``, ...),
  without a scheme, and either starting with ``./`` or ``../`` or naming a file or directory
  that exists here. For a ``docker:`` connector such a path is refused: the container sees
  only ``/local`` (``FERRYMAN_DOCKER_LOCAL_ROOT`` on the host). Fields whose names start with
  ``__`` (a declarative manifest) are never touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ferryman.connectors.references import ConnectorRef
from ferryman.errors import UserInputError

# Top-level fields of the built-in connectors that name files.
BUILTIN_PATH_FIELDS = {"destination-duckdb": ("path", "destination_path"), "destination-jsonl": ("path",)}

_PATH_KEY = re.compile(r"^(path|file|filename|url|dir|directory|folder)$|_(path|file|filename|url|dir)$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def settle_paths(
    ref: ConnectorRef,
    config: dict[str, Any],
    cwd: Path,
    local_root: Path,
    on_note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The config to store: relative paths made absolute against ``cwd``, each one told to
    ``on_note``; a :class:`UserInputError` for one a docker: connector could not reach."""
    known = BUILTIN_PATH_FIELDS.get(ref.name, ()) if ref.kind == "builtin" else ()
    settled: dict[str, Any] = _walk(config, "", _Settler(ref, cwd, local_root, known, on_note))
    return settled


class _Settler:
    def __init__(
        self,
        ref: ConnectorRef,
        cwd: Path,
        local_root: Path,
        known: tuple[str, ...],
        on_note: Callable[[str], None] | None,
    ) -> None:
        self.ref, self.cwd, self.local_root, self.known = ref, cwd, local_root, known
        self.on_note = on_note

    def value(self, field: str, value: str) -> str:
        if not _relative(value):
            return value
        if field not in self.known and not self._clearly_local(field, value):
            return value
        if self.ref.kind == "docker":
            raise UserInputError(
                f"config field {field!r} names {value!r} on this machine, which a docker: connector "
                f"cannot see: put it under {self.local_root} and write /local/{Path(value).name}"
            )
        absolute = os.path.normpath(self.cwd / value)
        if self.on_note is not None:
            self.on_note(f"config field {field!r}: {value!r} is stored as {absolute!r}")
        return absolute

    def _clearly_local(self, field: str, value: str) -> bool:
        if not _PATH_KEY.search(field.rsplit(".", 1)[-1].lower()):
            return False
        return value.startswith(("./", "../")) or os.path.exists(self.cwd / value)


def _relative(value: str) -> bool:
    """A string that reads as a relative file path: not absolute, no scheme, not ``~``."""
    if not value or "\n" in value or len(value) > 4096:
        return False
    return not value.startswith(("/", "~", ":")) and not _SCHEME.match(value)


def _internal(key: object) -> bool:
    """Airbyte's injected fields (``__injected_declarative_manifest``) hold code, not user
    input: a manifest's ``path: items`` is part of a URL, whatever files the user has here."""
    return isinstance(key, str) and key.startswith("__")


def _walk(value: Any, field: str, settler: _Settler) -> Any:
    if isinstance(value, str):
        return settler.value(field, value)
    if isinstance(value, dict):
        return {
            key: item if _internal(key) else _walk(item, f"{field}.{key}" if field else str(key), settler)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_walk(item, field, settler) for item in value]
    return value
