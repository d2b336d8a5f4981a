"""Venvs shared by the benchmarks that run airbyte-source-faker and PyAirbyte.

Both live under a cache dir (``~/.cache/ferryman-bench`` by default) and are installed once:
faker by Ferryman's own PyPI installer (``<cache>/venvs``, the layout of ``FERRYMAN_HOME/venvs``),
PyAirbyte into a venv of its own (it needs Python 3.10 to 3.12 and ~360 packages, none of which
become the project's dependencies). Imported by ``vs_pyairbyte.py`` and ``real_connector.py``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

from ferryman.connectors.pypi import ensure_installed

FAKER = ("airbyte-source-faker", "7.2.1")
PYAIRBYTE = ("airbyte", "0.71.3")
DEFAULT_CACHE_DIR = Path("~/.cache/ferryman-bench").expanduser()

# Run by the PyAirbyte venv's interpreter: argv[1] is a JSON document of what to do.
PYAIRBYTE_RUNNER = """
import json, os, sys, time
os.environ["AIRBYTE_OFFLINE_MODE"] = "1"
os.environ["DO_NOT_TRACK"] = "1"
job = json.loads(sys.argv[1])
import airbyte as ab
from airbyte.caches import DuckDBCache, PostgresCache
source = ab.get_source(
    "source-faker", local_executable=job["executable"], config=job["config"], streams="*",
    install_if_missing=False,
)
if job["target"] == "duckdb":
    cache = DuckDBCache(db_path=job["path"], schema_name="main")
else:
    cache = PostgresCache(schema_name="public", **job["postgres"])
started = time.perf_counter()
result = source.read(cache=cache, force_full_refresh=True)
print(json.dumps({"read_s": time.perf_counter() - started, "streams": sorted(result.streams)}))
"""


def faker_venv(cache_dir: Path) -> tuple[Path, str]:
    """airbyte-source-faker's venv under the cache dir (installed when missing) and its version."""
    installed = ensure_installed(*FAKER, cache_dir / "venvs")
    return installed.venv, installed.version


def write_pyairbyte_runner(cache_dir: Path) -> Path:
    runner = cache_dir / "pyairbyte_runner.py"
    runner.write_text(PYAIRBYTE_RUNNER)
    return runner


def _python_for_pyairbyte() -> str | None:
    """An interpreter PyAirbyte supports (3.10-3.12): this one, else one on PATH or pyenv's."""
    if (3, 10) <= sys.version_info[:2] <= (3, 12):
        return sys.executable
    for minor in (12, 11, 10):
        found = shutil.which(f"python3.{minor}")
        if found:
            return found
    return None


def ensure_pyairbyte(cache_dir: Path) -> tuple[Path | None, str]:
    """The PyAirbyte venv's python, installing it when missing; else None and why."""
    name, version = PYAIRBYTE
    venv = cache_dir / f"pyairbyte-{version}"
    python = venv / "bin" / "python"
    if (
        python.exists()
        and subprocess.run([python, "-c", "import airbyte"], capture_output=True).returncode == 0
    ):
        return python, f"{name} {version} (cached in {venv})"
    base = _python_for_pyairbyte()
    if base is None:
        return None, "PyAirbyte needs Python 3.10-3.12 and none was found"
    shutil.rmtree(venv, ignore_errors=True)
    print(f"installing {name}=={version} into {venv} (a few minutes)...", flush=True)
    started = time.monotonic()
    made = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True, text=True)
    if made.returncode:
        return None, f"cannot make a venv with {base}: {made.stderr.strip()[-500:]}"
    log = cache_dir / "pyairbyte-install.log"
    with log.open("w") as transcript:
        pip = subprocess.run(
            [python, "-m", "pip", "install", f"{name}=={version}"],
            stdout=transcript,
            stderr=subprocess.STDOUT,
        )
    if pip.returncode:
        return None, f"pip install {name}=={version} failed (see {log})"
    return python, f"{name} {version} (installed in {time.monotonic() - started:.0f} s)"


class Tools(NamedTuple):
    """What a side-by-side benchmark runs: faker's executable, and PyAirbyte's interpreter and
    runner (python None when PyAirbyte cannot be had; ``tools`` then lacks "pyairbyte")."""

    executable: Path
    version: str
    python: Path | None
    runner: Path
    tools: list[str]


def prepare_tools(cache_dir: Path, tools: list[str]) -> Tools:
    """Faker's venv, and PyAirbyte's when it is among ``tools`` (installed when missing)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    venv, version = faker_venv(cache_dir)
    tools = list(tools)
    python: Path | None = None
    if "pyairbyte" in tools:
        python, about = ensure_pyairbyte(cache_dir)
        print(f"PyAirbyte: {about}")
        if python is None:
            tools.remove("pyairbyte")
    return Tools(venv / "bin" / "source-faker", version, python, write_pyairbyte_runner(cache_dir), tools)
