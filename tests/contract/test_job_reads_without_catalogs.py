"""A sync of thousands of streams keeps its catalog in its config (megabytes) and a state and a
stat per stream in each attempt's output. Showing the job, masking its secrets, or waiting for
it reads neither where nothing shows them: the secrets are in its source's and destination's
configs, not in its streams (docs/performance.md, "Session 27: a job read without its
catalog"). On SQLite and Postgres alike, on the real store with a spy that counts the reads."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ferryman.api.app import create_app
from ferryman.api.context import ApiContext
from ferryman.cli import app as cli_app
from ferryman.cli import jobs as cli_jobs
from ferryman.engines.local import LocalEngine
from ferryman.errors import StoreError
from ferryman.jobs.states import JobStatus, JobType
from ferryman.notifications import Dispatcher
from ferryman.service import JobService
from ferryman.settings import Settings
from ferryman.store import SqlJobStore, StreamStat
from ferryman.store.base import Attempt, Job, NotificationEvent
from tests.contract.store_support import ALL_SLOTS, T0, claim_one, failure, later, store, store_url

__all__ = ["store", "store_url"]  # fixtures, imported for pytest

STREAMS = 300
SECRET = "hunter2-7f3c-d41d8cd98f"  # marked secret by the source's spec only
SPEC = {"connectionSpecification": {"properties": {"token": {"type": "string", "airbyte_secret": True}}}}
HUGE = 2**70  # an integer past 64 bits in a config, read back as written


class JobReadCounting:
    """The store, counting the catalogs of jobs' configs and the attempts' outputs it reads."""

    def __init__(self, real: SqlJobStore, on_read: Any = None) -> None:
        self.real = real
        self.catalogs = self.outputs = self.reads = 0
        self.on_read = on_read  # called with the count of jobs read so far

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def get_job(self, job_id: int, catalog: bool = True) -> Job:
        found: Job = self.real.get_job(job_id) if catalog else self.real.get_job(job_id, catalog=False)
        self.catalogs += isinstance(found.config.get("catalog"), dict)
        self.reads += 1
        if self.on_read is not None:
            self.on_read(self.reads)
        return found

    def list_attempts(self, job_id: int, outputs: bool = True) -> list[Attempt]:
        found: list[Attempt] = (
            self.real.list_attempts(job_id) if outputs else self.real.list_attempts(job_id, outputs=False)
        )
        self.outputs += sum(a.output is not None for a in found)
        return found


def _catalog() -> dict[str, Any]:
    return {
        "streams": [
            {
                "stream": {"name": f"table_{n}", "json_schema": {"type": "object"}},
                "sync_mode": "incremental",
                "destination_sync_mode": "append",
            }
            for n in range(STREAMS)
        ]
    }


def _sync(store: SqlJobStore, tmp_path: Path) -> tuple[Job, dict[str, Any]]:
    """A sync of STREAMS streams, ended in its second attempt; the first failed with the source's
    secret in its message and its log."""
    source = store.create_actor(
        "source", "db", "builtin:source-bench", {"token": SECRET, "n": HUGE}, spec=SPEC
    )
    destination = store.create_actor("destination", "out", "builtin:destination-devnull", {})
    conn = store.create_connection("many", source.id, destination.id, _catalog())
    config = {
        "version": 1,
        "connection_id": conn.id,
        "source": {
            "connector": source.connector,
            "config": source.config,
            "actor_id": source.id,
            "spec": SPEC,
        },
        "destination": {"connector": destination.connector, "config": {}, "actor_id": destination.id},
        "catalog": _catalog(),
        "namespace": {"definition": "source", "format": None, "prefix": ""},
    }
    store.enqueue(JobType.SYNC, str(conn.id), config)
    ((_, first),) = store.claim("engine-a", ALL_SLOTS, T0, lambda job, n: str(tmp_path / f"{job}-{n}.log"))
    Path(first.log_path).write_text(f"connecting with {SECRET}\n")
    refused = {"origin": "source", "type": "config_error", "message": f"refused {SECRET}", "timestamp_ms": 1}
    store.fail_attempt(first, None, {"failures": [refused], "partial_success": False}, later(1))
    store.schedule_retry(first.job_id, 0)
    _, second = claim_one(store, later(2))
    store.save_stream_stats(
        second.id, [StreamStat(second.id, f"table_{n}", None, 1, 10, 1, 10) for n in range(STREAMS)]
    )
    output = {"states": [{"stream": f"table_{n}", "cursor": n} for n in range(STREAMS)]}
    return store.succeed_attempt(second, output, later(3)), config


def test_a_job_read_without_its_catalog_has_its_ends_as_written(store: SqlJobStore, tmp_path: Path) -> None:
    job, config = _sync(store, tmp_path)
    spec = store.enqueue(JobType.SPEC, None, {"connector": "builtin:source-bench"})
    read = store.get_job(job.id, catalog=False)
    assert dataclasses.replace(read, config={}) == dataclasses.replace(job, config={})
    assert {k: v for k, v in read.config.items() if k != "catalog"} == {
        k: v for k, v in config.items() if k != "catalog"
    }
    assert read.config["source"]["config"]["n"] == HUGE
    with pytest.raises(StoreError, match="get_job"):
        read.config["catalog"].get("streams")
    assert store.get_job(spec.id, catalog=False).config == spec.config
    assert store.get_job(job.id).config == config
    assert [a.output for a in store.list_attempts(job.id, outputs=False)] == [None, None]
    stat = store.list_stream_stats(store.list_attempts(job.id)[1].id)[0]
    assert stat.figures() == {k: v for k, v in dataclasses.asdict(stat).items() if k != "attempt_id"}


def _api(store: Any) -> TestClient:
    return TestClient(create_app(ApiContext(JobService(store)), auth_required=False))


def test_the_apis_show_a_sync_masked_without_reading_its_catalog_or_outputs(
    store: SqlJobStore, tmp_path: Path
) -> None:
    job, _ = _sync(store, tmp_path)
    counting = JobReadCounting(store)
    with _api(counting) as client:
        own = client.get(f"/v1/ferryman/jobs/{job.id}").json()
        attempts = client.get(f"/v1/ferryman/jobs/{job.id}/attempts").json()["data"]
        config = client.post("/api/v1/jobs/get", json={"id": job.id}).json()
        public = client.get(f"/v1/jobs/{job.id}").json()
    assert (counting.catalogs, counting.outputs) == (0, 0)
    assert (own["status"], own["attempts"], "output" in own) == ("succeeded", 2, False)
    assert public["status"] == "succeeded"
    assert [len(a["streamStats"]) for a in attempts] == [0, STREAMS]
    assert attempts[0]["failureSummary"]["failures"][0]["externalMessage"] == "refused **********"
    (first, second) = config["attempts"]
    assert first["logs"]["logLines"] == ["connecting with **********"]
    assert len(second["attempt"]["streamStats"]) == STREAMS
    assert config["job"]["aggregatedStats"]["recordsCommitted"] == STREAMS
    assert SECRET not in json.dumps([own, attempts, public, config])


def test_the_config_apis_jobs_show_a_stored_failure_masked_as_ferrymans_attempts_do(
    store: SqlJobStore, tmp_path: Path
) -> None:
    """A failure stored with a secret in it (an older version's, or a text no worker masked)
    comes out of ``/api/v1/jobs/get``, ``/jobs/cancel`` and ``/jobs/list`` masked, as out of
    ``GET /v1/ferryman/jobs/{id}/attempts``; a listed job's ends are read for it, not its catalog."""
    job, _ = _sync(store, tmp_path)
    uuid = store.get_connection_by_id(int(job.scope or 0), catalog=False).uuid
    counting = JobReadCounting(store)
    with _api(counting) as client:
        own = client.get(f"/v1/ferryman/jobs/{job.id}/attempts").json()["data"][0]["failureSummary"]
        got = client.post("/api/v1/jobs/get", json={"id": job.id}).json()
        cancelled = client.post("/api/v1/jobs/cancel", json={"id": job.id}).json()
        listed = client.post("/api/v1/jobs/list", json={"configTypes": ["sync"], "configId": uuid}).json()
    for document in (got, cancelled):
        assert document["attempts"][0]["attempt"]["failureSummary"] == own
    assert listed["jobs"][0]["attempts"][0]["failureSummary"] == own
    assert own["failures"][0]["externalMessage"] == "refused **********"
    assert SECRET not in json.dumps([got, cancelled, listed])
    assert (counting.catalogs, counting.outputs) == (0, 0)


@contextmanager
def _cli_on(store: Any) -> Iterator[None]:
    @contextmanager
    def service() -> Iterator[JobService]:
        yield JobService(store)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli_jobs, "job_service", service)
        yield


def test_jobs_show_and_a_jobs_event_mask_its_secrets_without_reading_its_catalog(
    store: SqlJobStore, tmp_path: Path
) -> None:
    job, _ = _sync(store, tmp_path)
    counting = JobReadCounting(store)
    with _cli_on(counting):
        shown = CliRunner().invoke(cli_app, ["jobs", "show", str(job.id), "--json"])
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    assert [len(a["streams"]) for a in document["attempts"]] == [0, STREAMS]
    assert document["attempts"][1]["output"]["states"][7] == {"stream": "table_7", "cursor": 7}
    assert document["attempts"][0]["failures"][0]["message"] == "refused **********"
    assert SECRET not in shown.output
    assert counting.catalogs == 0

    now = datetime.now(T0.tzinfo)
    event = NotificationEvent(
        0, 0, "failure", None, job.id, {"message": f"it said {SECRET}"}, "pending", 0, now, now
    )
    dispatcher = Dispatcher(counting, "http://ferryman.test")  # type: ignore[arg-type]
    assert dispatcher._secrets(event, dispatcher._actors()) == [SECRET]
    assert counting.catalogs == 0


def test_waiting_for_a_job_reads_its_status_and_its_catalog_once_as_it_returns(
    store: SqlJobStore, tmp_path: Path
) -> None:
    """A sync waiting for its retry: each pass of ``run_jobs`` reads its status only; it is
    cancelled after three, and the job comes back whole (its config read once, then)."""
    job, config = _sync(store, tmp_path)
    store.enqueue(JobType.SYNC, job.scope, config)
    waiting, attempt = claim_one(store, later(4))
    store.fail_attempt(attempt, None, failure(), later(5))
    store.schedule_retry(waiting.id, 3600)

    def cancel_on_third(reads: int) -> None:  # another process cancels it meanwhile
        if reads == 3:
            store.request_cancel(waiting.id)

    counting = JobReadCounting(store, cancel_on_third)
    engine = LocalEngine(counting, Settings(home=tmp_path / "home"), poll_interval_s=0.01)  # type: ignore[arg-type]
    (ended,) = engine.run_jobs([waiting.id], timeout_s=60)
    assert ended.status is JobStatus.CANCELLED
    assert ended.config == config
    assert counting.catalogs == 1


def test_a_temporal_wait_for_an_ended_job_reads_its_catalog_once_as_it_returns(
    store: SqlJobStore, tmp_path: Path
) -> None:
    """Another process ended the sync before ``run_jobs`` looked: nothing is submitted (no
    Temporal server is asked), and the job comes back whole, its config read once."""
    from ferryman.engines.temporal.engine import TemporalEngine

    job, config = _sync(store, tmp_path)
    counting = JobReadCounting(store)
    engine = TemporalEngine(counting, Settings(home=tmp_path / "home"), poll_interval_s=0.01)  # type: ignore[arg-type]
    (ended,) = engine.run_jobs([job.id], timeout_s=60)
    assert ended == job and ended.config == config
    assert counting.catalogs == 1


def test_the_web_job_page_and_its_log_show_a_sync_masked_without_its_catalog_or_outputs(
    store: SqlJobStore, tmp_path: Path
) -> None:
    from fastapi import FastAPI

    from ferryman.web.app import mount

    job, _ = _sync(store, tmp_path)
    counting = JobReadCounting(store)
    app = FastAPI()
    mount(app, JobService(counting, Settings(home=tmp_path / "home")), required=False)  # type: ignore[arg-type]
    with TestClient(app) as client:
        page = client.get(f"/jobs/{job.id}")
        log = client.get(f"/jobs/{job.id}/attempts/0/log")
        stream = client.get(f"/jobs/{job.id}/log/stream?attempt=0")
        followed = client.get(f"/jobs/{job.id}/log/stream?after=1")
    assert page.status_code == 200 and "refused **********" in page.text
    assert "table_299" in page.text  # the last attempt's stats, stream by stream
    assert log.text == "connecting with **********\n"
    assert "data: connecting with **********" in stream.text and '"status": "failed"' in stream.text
    assert '"attempt": 1, "status": "succeeded"' in followed.text
    assert SECRET not in page.text + log.text + stream.text + followed.text
    assert (counting.catalogs, counting.outputs) == (0, 0)


def test_a_syncs_summary_and_jobs_show_read_the_outputs_only_for_json(
    store: SqlJobStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ferryman.cli.summary import print_outcome

    job, _ = _sync(store, tmp_path)
    counting = JobReadCounting(store)
    service = JobService(counting, Settings(home=tmp_path / "home"))  # type: ignore[arg-type]
    assert print_outcome(service, job, json=False) == 0
    summary = capsys.readouterr()
    assert f"{STREAMS:,} records emitted, {STREAMS:,} committed over 2 attempts" in summary.out + summary.err
    with _cli_on(counting):
        shown = CliRunner().invoke(cli_app, ["jobs", "show", str(job.id)])
    assert shown.exit_code == 0 and "refused **********" in shown.output
    assert (counting.catalogs, counting.outputs) == (0, 0)
    assert print_outcome(service, job, json=True) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["attempts"][1]["output"]["states"][7] == {"stream": "table_7", "cursor": 7}
    assert counting.outputs == 1
