"""The job's id and the connection's generation reach the destination's tables, as in Airbyte:
``_airbyte_meta.sync_id`` is the sync job's id and ``_airbyte_generation_id`` counts the
connection's resets (each reset starts a new generation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from tests.e2e.test_cli_jobs import Cli, bench_connection


def sync_ids_and_generations(path: Path) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as db:
        return db.execute(
            "SELECT DISTINCT CAST(json_extract(_airbyte_meta, '$.sync_id') AS BIGINT),"
            " _airbyte_generation_id FROM stream_0 ORDER BY 1"
        ).fetchall()


def test_rows_carry_the_sync_job_id_and_the_generation_of_the_connection(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    database = bench_connection(cli, tmp_path, "gen", 20)
    first = cli.json("connections", "sync", "gen")["job"]["id"]
    assert sync_ids_and_generations(database) == [(first, 0)]

    reset = cli.json("connections", "reset", "gen")["job"]
    assert reset["status"] == "succeeded"
    second = cli.json("connections", "sync", "gen")["job"]["id"]
    assert second > reset["id"] > first
    assert sync_ids_and_generations(database) == [(second, 1)]

    cli("state", "clear", "gen")  # the same generation: rows of both syncs, told apart by sync_id
    third = cli.json("connections", "sync", "gen")["job"]["id"]
    with duckdb.connect(str(database), read_only=True) as db:
        modes = db.execute("SELECT count(*) FROM stream_0").fetchall()
    assert modes == [(20,)]  # append_dedup: the third sync replaced every row
    assert sync_ids_and_generations(database) == [(third, 1)]
