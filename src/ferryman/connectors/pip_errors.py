"""What a failed ``pip install`` of a connector tells the user.

Three failures about the connector's own package get one line that says what to do: PyPI has
no such package, no such version, or cannot be reached. Everything else (a dependency that
does not exist or conflicts, an sdist whose build fails, a Python the package does not support)
is shown in pip's own words: every ``ERROR:`` line and the last lines of its stderr (where
a failed build prints its traceback), then the path of the log with pip's full output. No line
is picked by pattern to stand for the cause: pip prints unrelated ``ERROR:`` lines (versions
ignored for another Python) next to the real one, and an old pip's last line is only
"This error originates from a subprocess".
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ferryman.connectors.versions import version_key

EXAMPLE = "pypi:airbyte-source-faker"
# At most this many lines of pip's stderr besides its ERROR lines.
CONTEXT_LINES = 12

_NOT_FOUND_FOR = re.compile(r"No matching distribution found for ([A-Za-z0-9._-]+)")
_NETWORK = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Max retries exceeded|"
    r"ProxyError|SSLError|ConnectTimeoutError|ReadTimeoutError|Temporary failure in name "
    r"resolution|Name or service not known|Network is unreachable"
)
_AVAILABLE = re.compile(r"\(from versions: ([^)]*)\)")
_OTHER_PYTHON = re.compile(r"require a different python version: (.*)")
# Lines that never explain a failure: pip's notices about itself and retry warnings.
_NOISE = re.compile(r"^(\[notice\]|WARNING: Retrying|WARNING: You are using pip)")


def pip_failure(name: str, version: str | None, stderr: str, code: int, log_path: Path) -> str:
    """The message of a failed ``pip install NAME[==VERSION]``, given pip's stderr."""
    requirement = f"{name}=={version}" if version else name
    missing = _NOT_FOUND_FOR.search(stderr)
    if missing is not None and _canonical(missing[1]) == name:
        own = _own_package_missing(name, version, stderr)
        if own is not None:
            return own
    excerpt = error_excerpt(stderr)
    lines = [f"pip could not install {requirement} (exit code {code}); it said:"]
    lines += [f"  {line}" for line in excerpt] or ["  (nothing on stderr)"]
    lines.append(f"pip's full output: {log_path}")
    return "\n".join(lines)


def error_excerpt(stderr: str) -> list[str]:
    """Every ERROR line of pip's stderr, and its last ``CONTEXT_LINES`` other lines, in order;
    ``...`` where lines were left out."""
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip() and not _NOISE.match(line)]
    tail_from = max(0, len(lines) - CONTEXT_LINES)
    kept = [i for i, line in enumerate(lines) if i >= tail_from or _is_error(line)]
    excerpt: list[str] = []
    previous = -1
    for index in kept:
        if index != previous + 1:
            excerpt.append("...")
        excerpt.append(lines[index])
        previous = index
    return excerpt


def _is_error(line: str) -> bool:
    return line.lstrip().startswith(("ERROR:", "error:"))


def _own_package_missing(name: str, version: str | None, stderr: str) -> str | None:
    """One line when pip found no distribution of the connector's own package, else None."""
    requirement = f"{name}=={version}" if version else name
    listed = _AVAILABLE.search(stderr)
    available = [] if listed is None else [v.strip() for v in listed[1].split(",")]
    available = [v for v in available if v and v != "none"]
    if not available and _NETWORK.search(stderr):
        return (
            f"could not reach the package index to install {requirement}: check the network "
            "connection, proxy settings or PIP_INDEX_URL"
        )
    ignored = _ignored_versions(stderr)
    if (version is None and not available and ignored) or (
        version is not None and any(version_key(v) == version_key(version) for v in ignored)
    ):
        python = ".".join(map(str, sys.version_info[:2]))
        return (
            f"{requirement} does not support Python {python}, which runs ferryman: pin a version "
            f"that does (pypi:{name}==VERSION) or run ferryman with another Python"
        )
    if version and available:
        latest = max(available, key=version_key)
        return (
            f"PyPI has package {name} but no version {version}: pick an existing one, "
            f"e.g. pypi:{name}=={latest}"
        )
    if not available and not ignored:
        missing = f"{name} (or no version {version})" if version else name
        return f"PyPI has no package {missing}: check the name, e.g. {EXAMPLE}"
    return None  # e.g. only releases for another Python: pip's own words say it best


def _ignored_versions(stderr: str) -> list[str]:
    """The versions pip skipped because they require another Python: its line reads
    ``... different python version: 2.0 Requires-Python >=3.12; 2.1 Requires-Python >=3.12``."""
    found = _OTHER_PYTHON.search(stderr)
    if found is None:
        return []
    return [part.split()[0] for part in found[1].split(";") if part.strip()]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
