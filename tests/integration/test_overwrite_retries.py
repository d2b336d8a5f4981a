"""A full refresh | overwrite connection whose jobs fail after checkpointing, through the local
engine: a real source (the scripted test source, resuming from its state as a CDK source resumes
a full-refresh stream it checkpoints per page), real retries, each built-in destination.

What a user sees: the table keeps its old rows, exactly, while a job fails, whatever it
checkpointed; a job whose retry completes leaves the new sync's rows, each once; the next job
never picks up what a failed job staged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from ferryman.jobs.states import AttemptStatus, JobStatus
from ferryman.store import open_store
from tests.contract.destination_support import (
    DuckDBTarget,
    JsonlTarget,
    PostgresTarget,
    Target,
    pg_database,  # noqa: F401 (a fixture)
)
from tests.integration.test_engine import scripted, service_for

DESTINATIONS = {
    "duckdb": "builtin:destination-duckdb",
    "postgres": "builtin:destination-postgres",
    "jsonl": "builtin:destination-jsonl",
}


def target_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Target:
    if kind == "duckdb":
        return DuckDBTarget(tmp_path)
    if kind == "jsonl":
        return JsonlTarget(tmp_path)
    return PostgresTarget(tmp_path, request.getfixturevalue("pg_database"))


def script(first: list[dict[str, Any]], resumed: list[dict[str, Any]]) -> dict[str, Any]:
    """A source config: ``first`` without a state, ``resumed`` (counting on from the state's
    cursor) when the engine hands it the job's committed state."""
    return {"steps": first, "resumed_steps": resumed}


def page(records: int) -> list[dict[str, Any]]:
    return [{"records": records}, {"state": {"name": "users"}}]


@pytest.mark.parametrize("kind", list(DESTINATIONS))
def test_failed_jobs_keep_the_old_rows_and_a_completed_retry_holds_each_new_row_once(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    target = target_for(kind, tmp_path, request)
    store = open_store(f"sqlite:///{tmp_path / 'ferryman.db'}")
    service = service_for(store, tmp_path / "home")
    source = service.create_actor("source", "src", scripted(tmp_path), {})  # discovers `users`
    config = orjson.loads(target.config.read_bytes())
    service.create_actor("destination", "dst", DESTINATIONS[kind], config)
    service.create_connection("c", "src", "dst", full_refresh=True)
    modes = [
        (s["sync_mode"], s["destination_sync_mode"]) for s in store.get_connection("c").catalog["streams"]
    ]
    assert modes == [("full_refresh", "overwrite")]

    def run(steps: dict[str, Any]) -> tuple[JobStatus, list[AttemptStatus], int]:
        store.update_actor_config(source.id, steps)
        job = service.run(service.enqueue_replication("c"))
        return job.status, [a.status for a in store.list_attempts(job.id)], job.id

    def ids() -> list[int]:
        return [row[0] for row in target.rows("users", "id")]

    # The first job puts ids 1..3 in place.
    status, _, first = run(script([*page(3)], []))
    assert status is JobStatus.SUCCEEDED and ids() == [1, 2, 3]

    # Every attempt checkpoints a page, reads on, and fails; each retry resumes after the last page.
    failing = script([*page(2), {"records": 1}, {"exit": 1}], [*page(1), {"records": 1}, {"exit": 1}])
    status, attempts, _ = run(failing)
    assert status is JobStatus.FAILED and attempts == [AttemptStatus.FAILED] * 3
    assert ids() == [1, 2, 3]  # the old rows, exactly as they were
    if target.typed:
        metas = [row[0] for row in target.rows("users", "_airbyte_meta")]
        assert {meta["sync_id"] for meta in metas} == {first}
    assert target.staged("users") == 4  # pages of 2, 1 and 1, kept for a retry that never comes

    # The next job fails after its first page, and its retry reads the rest: ids 1..5, each once.
    status, attempts, last = run(script([*page(2), {"records": 1}, {"exit": 1}], [*page(3)]))
    assert status is JobStatus.SUCCEEDED
    assert attempts == [AttemptStatus.FAILED, AttemptStatus.SUCCEEDED]
    assert ids() == [1, 2, 3, 4, 5]
    if target.typed:
        metas = [row[0] for row in target.rows("users", "_airbyte_meta")]
        assert {meta["sync_id"] for meta in metas} == {last}
    assert target.staged("users") == 0  # the failed job's staging went with the next job
