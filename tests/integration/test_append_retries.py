"""An incremental | append connection whose jobs fail after checkpointing, through the local
engine: a real source (the scripted test source, resuming from its state's cursor), real
retries, each built-in destination.

What a user sees: a job whose first attempt fails after a state and whose retry completes
stores every record once; before, the records the failed attempt read after its last state were
committed at the end of its input and read again by the retry, so they were stored twice. A job
that fails without ever checkpointing stores nothing; the next job, succeeding without a state,
stores all it read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from ferryman.jobs.states import AttemptStatus, JobStatus
from ferryman.protocol.catalog import StreamChoice
from ferryman.protocol.stream_refs import StreamRef
from ferryman.protocol.sync_modes import parse_mode
from ferryman.store import open_store
from tests.contract.destination_support import pg_database  # noqa: F401 (a fixture)
from tests.integration.test_engine import scripted, service_for
from tests.integration.test_overwrite_retries import DESTINATIONS, page, script, target_for


@pytest.mark.parametrize("kind", list(DESTINATIONS))
def test_a_retried_append_job_stores_each_record_once(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    target = target_for(kind, tmp_path, request)
    store = open_store(f"sqlite:///{tmp_path / 'ferryman.db'}")
    service = service_for(store, tmp_path / "home")
    source = service.create_actor("source", "src", scripted(tmp_path), {})  # discovers `users`
    service.create_actor("destination", "dst", DESTINATIONS[kind], orjson.loads(target.config.read_bytes()))
    choice = StreamChoice(StreamRef.named("users"), parse_mode("incremental:append"), cursor=["id"])
    service.create_connection("c", "src", "dst", choices=[choice])
    modes = [
        (s["sync_mode"], s["destination_sync_mode"]) for s in store.get_connection("c").catalog["streams"]
    ]
    assert modes == [("incremental", "append")]

    def run(steps: dict[str, Any]) -> tuple[JobStatus, list[AttemptStatus]]:
        store.update_actor_config(source.id, steps)
        job = service.run(service.enqueue_replication("c"))
        return job.status, [a.status for a in store.list_attempts(job.id)]

    def ids() -> list[int]:
        return [row[0] for row in target.rows("users", "id")]

    # Every attempt reads records without a state and fails: nothing of the job is stored.
    status, attempts = run(script([{"records": 3}, {"exit": 1}], []))
    assert status is JobStatus.FAILED and attempts == [AttemptStatus.FAILED] * 3
    assert ids() == []

    # The next job's source checkpoints 2 records, reads a third and fails; the retry resumes
    # after the state and reads ids 3..5: each id once.
    status, attempts = run(script([*page(2), {"records": 1}, {"exit": 1}], [*page(3)]))
    assert status is JobStatus.SUCCEEDED
    assert attempts == [AttemptStatus.FAILED, AttemptStatus.SUCCEEDED]
    assert ids() == [1, 2, 3, 4, 5]

    # A job whose every attempt fails after a state keeps what its states covered, once.
    status, attempts = run(script([], [*page(1), {"records": 2}, {"exit": 1}]))
    assert status is JobStatus.FAILED and attempts == [AttemptStatus.FAILED] * 3
    assert ids() == [1, 2, 3, 4, 5, 6, 7, 8]  # 6, 7, 8: one page per attempt, each after the last

    # A job whose source sends no state at all and succeeds stores everything it read.
    status, attempts = run(script([], [{"records": 2}]))
    assert status is JobStatus.SUCCEEDED
    assert ids() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
