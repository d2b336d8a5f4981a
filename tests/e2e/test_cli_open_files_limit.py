"""Syncs of hundreds of streams under a low limit of open files, as a systemd service meets them.

systemd services and many hosts start with a soft ``RLIMIT_NOFILE`` of 1024 (here 256, for a
source of 400 streams, to keep the test short). Before, destination-duckdb held a spill file and
a staging-table lock per stream and failed every attempt with "Too many open files", followed by
advice to free disk space. ``ferryman`` and each built-in connector now raise their soft limit to
the hard one at start-up; where the hard limit itself is too low, the failure names the limit
and how to raise it.
"""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import duckdb
import psycopg
import pytest

from tests.contract.destination_support import pg_database  # noqa: F401 (a fixture)
from tests.contract.store_support import PG_HOST, PG_PORT, PG_USER
from tests.e2e.test_cli_jobs import Cli

STREAMS = 400
COUNT = 2


def _limited(soft: int, hard: int | None = None) -> object:
    def set_limit() -> None:
        current_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, current_hard if hard is None else hard))

    return set_limit


def _connection(cli: Cli, connector: str, config: dict[str, object]) -> None:
    source = {"streams": STREAMS, "count": COUNT}
    cli("sources", "create", "src", "--connector", "builtin:source-bench", "--config", json.dumps(source))
    cli("destinations", "create", "dst", "--connector", connector, "--config", json.dumps(config))
    cli("connections", "create", "conn", "--source", "src", "--destination", "dst", "--full-refresh")


def _sync(cli: Cli, soft: int, hard: int | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        cli.argv("connections", "sync", "conn"),
        capture_output=True,
        text=True,
        env={**cli.env, "SYNC_JOB_MAX_ATTEMPTS": "1"},
        timeout=300,
        preexec_fn=_limited(soft, hard),
    )
    cli.printed += [result.stdout, result.stderr]
    return result


def _rows_duckdb(path: Path) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as con:
        names = [row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return {name: con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}  # type: ignore[index]


def _rows_jsonl(directory: Path) -> dict[str, int]:
    return {path.stem: len(path.read_bytes().splitlines()) for path in directory.glob("*.jsonl")}


def _rows_postgres(database: str) -> dict[str, int]:
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        return {name: conn.execute(f'SELECT count(*) FROM public."{name}"').fetchone()[0] for name in names}  # type: ignore[index]


@pytest.mark.parametrize("kind", ["duckdb", "jsonl", "postgres", "devnull"])
def test_a_sync_of_hundreds_of_streams_succeeds_under_a_soft_limit_of_256(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    cli = Cli(tmp_path / "home")
    out = tmp_path / "out"
    if kind == "duckdb":
        _connection(cli, "builtin:destination-duckdb", {"path": str(out / "db.duckdb")})
    elif kind == "jsonl":
        _connection(cli, "builtin:destination-jsonl", {"path": str(out)})
    elif kind == "postgres":
        database = request.getfixturevalue("pg_database")
        config = {"host": PG_HOST, "port": PG_PORT, "database": database, "username": PG_USER}
        _connection(cli, "builtin:destination-postgres", config)
    else:
        _connection(cli, "builtin:destination-devnull", {})

    result = _sync(cli, soft=256)

    total = STREAMS * COUNT
    assert result.returncode == 0, result.stdout + result.stderr
    summary = next(line for line in result.stdout.splitlines() if " sync succeeded in " in line)
    assert f"{total} records emitted, {total} committed;" in summary, summary
    expected = {f"stream_{i}": COUNT for i in range(STREAMS)}
    if kind == "duckdb":
        assert _rows_duckdb(out / "db.duckdb") == expected
    elif kind == "jsonl":
        assert _rows_jsonl(out) == expected
    elif kind == "postgres":
        assert _rows_postgres(database) == expected


def test_a_hard_limit_too_low_is_named_with_how_to_raise_it_not_as_a_full_disk(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    _connection(cli, "builtin:destination-duckdb", {"path": str(tmp_path / "db.duckdb")})

    result = _sync(cli, soft=128, hard=128)  # what `ulimit -n 128` sets: no raising past it

    assert result.returncode != 0
    shown = result.stdout + cli("jobs", "show", "2").stdout
    assert "too many open files" in shown and "RLIMIT_NOFILE" in shown and "ulimit -n" in shown, shown
    assert "free space" not in shown
