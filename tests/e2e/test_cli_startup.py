"""What the commands a user types most load at start-up: `ferryman --help`, `jobs list` and a sync
import none of the packages only other commands need (Alembic only when the store must be
upgraded; DuckDB, FastAPI, Temporal, httpx, ... only where used). Each loads in tens to hundreds
of milliseconds, paid on every command. With ``--json`` nothing prints for people, so neither rich
nor PyYAML (only a YAML file needs it) loads; on a SQLite store SQLAlchemy's Postgres dialect does
not either; and ``--help`` loads none of the store, the engines, the runner or the workers. Each
command runs in a subprocess that writes the modules in ``sys.modules`` as it exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from ferryman.store.migrate import alembic_config, head_revision

NEVER_AT_START = {
    "alembic", "duckdb", "fastapi", "uvicorn", "starlette", "jinja2", "prometheus_client",
    "temporalio", "httpx", "croniter", "jsonschema",
}  # fmt: skip
NEVER_WITH_JSON = {"rich", "yaml", "markdown_it", "pygments"}  # people's output, YAML files
POSTGRES_DIALECT = "sqlalchemy.dialects.postgresql"
# What only running a job needs: the commands that run none (`--help`) must not load these.
JOB_MACHINERY = (
    "ferryman.store", "ferryman.service", "ferryman.engines", "ferryman.workers",
    "ferryman.launchers", "ferryman.runner", "ferryman.connectors.pypi",
)  # fmt: skip
_AT_EXIT = """
import atexit, json, runpy, sys
out, sys.argv = sys.argv[1], ["ferryman", *sys.argv[2:]]

def write():  # at exit: ferryman ends without the interpreter's teardown, but runs atexit handlers
    with open(out, "w") as handle:
        json.dump(sorted(sys.modules), handle)

atexit.register(write)
runpy.run_module("ferryman", run_name="__main__", alter_sys=True)
"""


def loaded(home: Path, *args: str) -> set[str]:
    """The top-level packages ``ferryman ARGS`` had imported when it exited (it must exit 0)."""
    return top_level(modules(home, *args))


def top_level(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def modules(home: Path, *args: str) -> set[str]:
    """The modules ``ferryman ARGS`` had imported when it exited (it must exit 0)."""
    out = home.parent / "modules.json"
    env = {**os.environ, "FERRYMAN_HOME": str(home)}
    env.pop("FERRYMAN_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", _AT_EXIT, str(out), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return set(json.loads(out.read_text()))


def test_help_imports_neither_the_store_nor_any_server_package(tmp_path: Path) -> None:
    names = modules(tmp_path / "home", "--help")
    assert top_level(names) & (NEVER_AT_START | {"sqlalchemy", "psycopg", "yaml"}) == set()
    assert {name for name in names if name.startswith(JOB_MACHINERY)} == set()


def test_jobs_list_imports_alembic_only_when_the_store_needs_an_upgrade(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert "alembic" in loaded(home, "jobs", "list")  # a new store: created by its migrations
    packages = loaded(home, "jobs", "list")
    assert "sqlalchemy" in packages
    assert not packages & NEVER_AT_START
    names = modules(home, "jobs", "list", "--json")
    assert top_level(names) & (NEVER_AT_START | NEVER_WITH_JSON) == set()
    assert POSTGRES_DIALECT not in names


def bench_void_connection(home: Path) -> None:
    """Connection ``bench-void``: five records of source-bench into destination-devnull."""
    loaded(
        home, "sources", "create", "bench", "--connector", "builtin:source-bench", "--config", '{"count": 5}'
    )
    loaded(home, "destinations", "create", "void", "--connector", "builtin:destination-devnull")
    loaded(home, "connections", "create", "bench-void", "--source", "bench", "--destination", "void")


def test_a_sync_imports_only_what_it_uses(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bench_void_connection(home)
    assert not loaded(home, "connections", "sync", "bench-void") & NEVER_AT_START
    adhoc = ["--source", "builtin:source-bench", "--source-config", '{"count": 5}']
    assert not loaded(home, "sync", *adhoc, "--destination", "builtin:destination-devnull") & NEVER_AT_START


def test_a_sync_with_json_imports_neither_rich_nor_yaml(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bench_void_connection(home)
    names = modules(home, "connections", "sync", "bench-void", "--json")
    assert "ferryman.workers.replication" in names  # it ran the sync here
    assert top_level(names) & (NEVER_AT_START | NEVER_WITH_JSON) == set()
    assert POSTGRES_DIALECT not in names
    adhoc = ["--source", "builtin:source-bench", "--source-config", '{"count": 5}']
    names = modules(home, "sync", *adhoc, "--destination", "builtin:destination-devnull", "--json")
    assert "ferryman.workers.replication" in names
    assert top_level(names) & (NEVER_AT_START | NEVER_WITH_JSON) == set()


def test_the_head_revision_read_off_the_file_names_is_alembics() -> None:
    """The cheap head check (no Alembic import) must agree with Alembic, or a store would be
    taken for current when it is not (or upgraded at every start)."""
    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
