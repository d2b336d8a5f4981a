"""The built-in destinations as the destination contract suite drives them: real processes, read
back from their real storage (a DuckDB file, a PostgreSQL database of the test's own, files)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from ferryman.builtin._duckdb_file import open_database
from ferryman.builtin._postgres_tables import staging_prefix
from tests.contract.store_support import PG_HOST, PG_PORT, PG_USER, _admin, require_postgres

TYPED = ["duckdb", "postgres"]
ALL = [*TYPED, "jsonl"]


def command(module: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", f"ferryman.builtin.{module}", *map(str, args)]


def messages_in(*messages: dict[str, Any]) -> bytes:
    return b"".join(orjson.dumps(m) + b"\n" for m in messages)


def record(stream: str, data: dict[str, Any], emitted_at: int = 1_700_000_000_000) -> dict[str, Any]:
    return {"type": "RECORD", "record": {"stream": stream, "data": data, "emitted_at": emitted_at}}


def state(stream: str, value: Any) -> dict[str, Any]:
    body = {"stream_descriptor": {"name": stream}, "stream_state": value}
    return {"type": "STATE", "state": {"type": "STREAM", "stream": body}}


def complete(stream: str) -> dict[str, Any]:
    status = {"stream_descriptor": {"name": stream}, "status": "COMPLETE"}
    return {"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 1, "stream_status": status}}


def parse(stdout: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stdout.splitlines()]


def echoed(found: list[dict[str, Any]]) -> list[Any]:
    return [m["state"]["stream"]["stream_state"] for m in found if m["type"] == "STATE"]


def stream(
    name: str,
    properties: dict[str, Any],
    mode: str = "append",
    key: str | None = "id",
    cursor: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One configured stream of a catalog."""
    entry: dict[str, Any] = {
        "stream": {
            "name": name,
            "json_schema": {"type": "object", "properties": properties},
            "supported_sync_modes": ["full_refresh", "incremental"],
            "source_defined_primary_key": [[key]] if key else None,
        },
        "sync_mode": "incremental",
        "destination_sync_mode": mode,
        **extra,
    }
    if cursor:
        entry["cursor_field"] = [cursor]
    return entry


class Target:
    """One destination, its config and catalog files, and a way to read what it stored."""

    module = ""
    typed = True

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.config = tmp_path / f"{self.module}.json"
        self.config.write_bytes(orjson.dumps(self.config_body()))

    def config_body(self) -> dict[str, Any]:
        raise NotImplementedError

    def catalog(self, *streams: dict[str, Any]) -> Path:
        path = self.tmp_path / f"catalog-{uuid.uuid4().hex[:8]}.json"
        path.write_bytes(orjson.dumps({"streams": list(streams)}))
        return path

    def write(self, catalog: Path, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        done = subprocess.run(
            self.command(catalog), input=messages_in(*messages), capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return parse(done.stdout)

    def command(self, catalog: Path) -> list[str]:
        return command(self.module, "write", "--config", self.config, "--catalog", catalog)

    def start(self, catalog: Path) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command(catalog), stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def rows(self, table: str, columns: str) -> list[tuple[Any, ...]]:
        """The table's ``columns`` (comma-separated), every row, sorted."""
        raise NotImplementedError

    def types(self, table: str) -> dict[str, str]:
        """Column name -> SQL type, as the database names it (lower case)."""
        raise NotImplementedError

    def staged(self, table: str) -> int:
        """How many records overwrite syncs hold staged for ``table`` (in any staging table)."""
        raise NotImplementedError


class DuckDBTarget(Target):
    module = "destination_duckdb"

    @property
    def path(self) -> Path:
        return self.tmp_path / "out" / "db.duckdb"

    def config_body(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        # Waits while a destination still holds the file (it lets go once its input is quiet).
        with open_database(str(self.path), 60, lambda _: None) as con:
            return con.execute(sql).fetchall()

    def rows(self, table: str, columns: str) -> list[tuple[Any, ...]]:
        found = self.query(f'SELECT {columns} FROM "{table}"')
        return _sorted(found)

    def types(self, table: str) -> dict[str, str]:
        found = self.query(
            f"SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{table}'"
        )
        return {name: kind.lower() for name, kind in found}

    def staged(self, table: str) -> int:
        names = self.query(
            "SELECT table_name FROM information_schema.tables"
            f" WHERE starts_with(table_name, '_ferryman_staging_{table}_')"
        )
        return sum(self.query(f'SELECT count(*) FROM "{name}"')[0][0] for (name,) in names)


class PostgresTarget(Target):
    module = "destination_postgres"

    def __init__(self, tmp_path: Path, database: str) -> None:
        self.database = database
        super().__init__(tmp_path)

    def config_body(self) -> dict[str, Any]:
        return {
            "host": PG_HOST,
            "port": PG_PORT,
            "database": self.database,
            "username": PG_USER,
            "ssl_mode": "disable",
        }

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=self.database) as conn:
            return conn.execute(sql).fetchall()  # type: ignore[arg-type]

    def rows(self, table: str, columns: str) -> list[tuple[Any, ...]]:
        found = self.query(f'SELECT {columns} FROM public."{table}"')
        return _sorted(found)

    def types(self, table: str) -> dict[str, str]:
        found = self.query(
            "SELECT column_name, data_type FROM information_schema.columns"
            f" WHERE table_schema = 'public' AND table_name = '{table}'"
        )
        return {name: kind.lower() for name, kind in found}

    def staged(self, table: str) -> int:
        prefix = staging_prefix("public", table)
        names = self.query(
            "SELECT table_name FROM information_schema.tables"
            f" WHERE table_schema = 'public' AND starts_with(table_name, '{prefix}')"
        )
        return sum(self.query(f'SELECT count(*) FROM public."{name}"')[0][0] for (name,) in names)


class JsonlTarget(Target):
    module = "destination_jsonl"
    typed = False

    def config_body(self) -> dict[str, Any]:
        return {"path": str(self.tmp_path / "files")}

    def rows(self, table: str, columns: str) -> list[tuple[Any, ...]]:
        path = self.tmp_path / "files" / f"{table}.jsonl"
        names = [name.strip() for name in columns.split(",")]
        found = [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []
        return _sorted([tuple(item.get(name) for name in names) for item in found])

    def staged(self, table: str) -> int:
        """Up to the size a sync's staging file had at its last committed state, if it says."""
        staged = 0
        for path in (self.tmp_path / "files").glob(f"{table}.jsonl.ferryman-*"):
            if path.name.endswith(".ferryman-tmp") or path.name.rpartition("-")[2].isdigit():
                committed = path.with_name(path.name + ".committed")
                size = int(committed.read_text()) if committed.exists() else None
                staged += len(path.read_bytes()[:size].splitlines())
        return staged


def _sorted(found: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows sorted column by column, NULLs last; JSON columns as Python values."""
    rows = [tuple(_plain(value) for value in row) for row in found]

    def order(row: tuple[Any, ...]) -> list[tuple[bool, str, Any]]:
        return [
            (
                value is None,
                type(value).__name__,
                value if isinstance(value, int | float | str) else repr(value),
            )
            for value in row
        ]

    return sorted(rows, key=order)


def _plain(value: Any) -> Any:
    """JSON columns as Python values, whichever database (DuckDB hands JSON over as text)."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


@pytest.fixture
def pg_database() -> Iterator[str]:
    require_postgres()
    name = f"ferryman_dest_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_target(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Target:
    if kind == "duckdb":
        return DuckDBTarget(tmp_path)
    if kind == "jsonl":
        return JsonlTarget(tmp_path)
    return PostgresTarget(tmp_path, request.getfixturevalue("pg_database"))


def grow_disk(path: Path, size: str) -> None:
    """What freeing space on a full disk does: the tmpfs at ``path`` takes ``size`` from now on."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True, capture_output=True)
