"""A sync of thousands of streams holds its catalog (megabytes of JSON, several times that once
decoded) as few times as it can (docs/performance.md, "Memory of a sync of many streams"): the
store keeps no document it was given once the write returns, and a sync run by `connections
sync` decodes its job's config once, to run it, on SQLite and Postgres.
"""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import ferryman.store
from ferryman.cli import app as cli_app
from ferryman.jobs.states import AttemptStatus, JobStatus, JobType
from ferryman.store import SqlJobStore, rows
from ferryman.store.base import Attempt, Job
from tests.contract.store_support import T0, later, store, store_url

__all__ = ["store", "store_url"]  # fixtures, imported for pytest

STREAMS = 200


class Document(dict[str, Any]):
    """A JSON object the test can hold a weak reference to (a plain dict takes none)."""


def _catalog() -> dict[str, Any]:
    return {
        "streams": [
            {
                "stream": {
                    "name": f"table_{n}",
                    "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
                    "supported_sync_modes": ["full_refresh", "incremental"],
                },
                "sync_mode": "full_refresh",
                "destination_sync_mode": "append",
            }
            for n in range(STREAMS)
        ]
    }


def _kept_after(write: Callable[[Document], object]) -> bool:
    """Whether anything still holds the document given to ``write`` once it returned."""
    document = Document(_catalog())
    gone = weakref.ref(document)
    write(document)
    del document
    gc.collect()
    return gone() is not None


def test_the_store_keeps_no_document_it_wrote(store: SqlJobStore) -> None:
    # SQLAlchemy caches a statement compiled with the values of the first of its shape: a
    # document put in the statement stayed referenced for as long as the process lived.
    source = store.create_actor("source", "db", "builtin:source-bench", {"count": 1})
    destination = store.create_actor("destination", "out", "builtin:destination-devnull", {})
    made: list[Any] = []

    def connection(catalog: Document) -> None:
        made.append(store.create_connection("many", source.id, destination.id, catalog))

    assert not _kept_after(connection)
    conn = made[0]
    assert not _kept_after(lambda catalog: store.update_connection(conn.id, catalog=catalog))
    assert not _kept_after(lambda catalog: store.update_connection_catalog(conn.id, catalog))
    assert store.get_connection_by_id(conn.id).catalog == _catalog()

    def job(config: Document) -> None:
        config["connection_id"] = conn.id
        made.append(store.enqueue_running(JobType.SYNC, str(conn.id), config, "e1", T0, _log_path))

    assert not _kept_after(job)
    sync, attempt = made[-1]
    assert sync.config["streams"] == _catalog()["streams"]
    assert not _kept_after(lambda state: store.save_state(conn.id, [state]))
    assert not _kept_after(lambda output: store.succeed_attempt(attempt, output, later(1)))
    assert store.list_attempts(sync.id)[0].output == _catalog()
    assert store.get_state(conn.id) == [_catalog()]


def _log_path(job_id: int, number: int) -> str:
    return f"/nonexistent/{job_id}/{number}/logs.log"


@contextmanager
def _configs_decoded(decoded: list[int]) -> Iterator[None]:
    """Count each job row built with its config read (not left unread) that is a sync's."""
    real = rows.job

    def counting(row: Any) -> Job:
        job = real(row)
        if isinstance(job.config, dict) and "catalog" in job.config:
            decoded.append(job.id)
        return job

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rows, "job", counting)
        yield


@contextmanager
def _outputs_decoded(decoded: list[int]) -> Iterator[None]:
    """Count each attempt row built with a sync's output read (its stats and states per stream)."""
    real = rows.attempt

    def counting(row: Any) -> Attempt:
        attempt = real(row)
        if isinstance(attempt.output, dict) and "streams" in attempt.output:
            decoded.append(attempt.id)
        return attempt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rows, "attempt", counting)
        yield


def test_a_sync_of_many_streams_decodes_its_config_and_its_output_once(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FERRYMAN_HOME", str(tmp_path / "home"))
    if store_url.startswith("postgresql"):
        monkeypatch.setenv("FERRYMAN_DATABASE_URL", store_url)
    else:
        monkeypatch.delenv("FERRYMAN_DATABASE_URL", raising=False)
    run = CliRunner()
    config = json.dumps({"count": 1, "streams": STREAMS})
    for argv in (
        ["sources", "create", "many", "--connector", "builtin:source-bench", "--config", config],
        ["destinations", "create", "out", "--connector", "builtin:destination-devnull"],
        ["connections", "create", "c", "--source", "many", "--destination", "out"],
    ):
        done = run.invoke(cli_app, argv)
        assert done.exit_code == 0, done.output

    decoded: list[int] = []
    outputs: list[int] = []
    with _configs_decoded(decoded), _outputs_decoded(outputs):
        done = run.invoke(cli_app, ["connections", "sync", "c", "--json"])
    assert done.exit_code == 0, done.output
    summary = json.loads(done.output)
    assert summary["job"]["status"] == JobStatus.SUCCEEDED.value
    assert len(summary["attempts"][-1]["streams"]) == STREAMS
    # Once as the attempt starts (it runs that config); not again as the attempt's end is
    # written, nor as the engine hands the ended job back (the attempt's end left it so), nor for
    # the summary. Session 25: four times, and the insert's RETURNING decoded it once more below
    # the rows; session 26: twice.
    assert len(decoded) == 1, decoded
    # The attempt's output (a stat and a state per stream) once, for the summary: the write that
    # ends the attempt does not read back what it wrote.
    assert len(outputs) == 1, outputs
    with ferryman.store.open_store(home=tmp_path / "home") as opened:
        assert [a.status for a in opened.list_attempts(decoded[0])] == [AttemptStatus.SUCCEEDED]
    # The summary is the job as the store keeps it: what `jobs show` prints of it afterwards.
    shown = run.invoke(cli_app, ["jobs", "show", str(decoded[0]), "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output) == summary
