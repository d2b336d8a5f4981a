"""Jobs queued, and figures shown, on hosts whose clocks disagree, sharing one store: a job's
``created_at`` is the store's time whichever host queued it, so the scheduler's failure streak
and ``/metrics``' oldest pending job's age judge it as the store does (the Temporal sweep:
tests/integration/test_temporal_sweep.py). Real Postgres (and SQLite, where one file stands for
the shared store); a host whose clock is wrong is ``on_host`` (test_scheduler_clock_skew.py).

Before, ``created_at`` was the queueing host's wall clock: a job queued on a host 5 minutes
behind looked 5 minutes older than it was, its failure fell before a connection's
``active_since`` (made the store's time when re-enabled) and was not counted; and a scrape
counted ages to the serving host's clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from _pytest.fixtures import FixtureRequest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ferryman.api.metrics import StoreCollector
from ferryman.jobs.schedules import parse_schedule
from ferryman.jobs.states import JobStatus, JobType
from ferryman.scheduler import Scheduler
from ferryman.service import JobService
from ferryman.settings import SchedulerSettings
from ferryman.store import SqlJobStore, open_store
from ferryman.store.base import Connection, Job
from ferryman.store.schema import jobs
from tests.contract.store_support import failure, log_path
from tests.integration.test_engine import postgres_url, settings
from tests.integration.test_scheduler_clock_skew import FAST_S, SLOW_S, on_host

__all__ = ["postgres_url"]  # fixtures used here

HOSTS = pytest.mark.parametrize("offset_s", [FAST_S, SLOW_S], ids=["host-5-min-ahead", "host-5-min-behind"])
STORES = pytest.mark.parametrize("store_kind", ["postgres", "sqlite"])


def _open(store_kind: str, request: FixtureRequest, tmp_path: Path) -> SqlJobStore:
    url = (
        request.getfixturevalue("postgres_url")
        if store_kind == "postgres"
        else f"sqlite:///{tmp_path / 'f.db'}"
    )
    store = open_store(url)
    assert isinstance(store, SqlJobStore)
    return store


def _connection(store: SqlJobStore, service: JobService, name: str = "orders") -> Connection:
    source = store.create_actor("source", f"src-{name}", "builtin:source-bench", {})
    destination = store.create_actor("destination", f"dst-{name}", "builtin:destination-devnull", {})
    made = store.create_connection(name, source.id, destination.id, {"streams": []})
    return service.update_connection(made, schedule=parse_schedule("every 1h"))


def _oldest_pending_age(collector: StoreCollector, job_type: str) -> float:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name == "ferryman_oldest_pending_job_age_seconds" and sample.labels["type"] == job_type:
                return float(sample.value)
    raise AssertionError(f"no oldest pending {job_type} job in the scrape")


@HOSTS
@STORES
def test_a_job_queued_on_a_host_with_a_wrong_clock_is_stamped_with_the_stores_time(
    store_kind: str, offset_s: float, request: FixtureRequest, tmp_path: Path
) -> None:
    """A spec job queued through the job service, and a sync queued already started (what
    ``ferryman connections sync`` does with a local engine), on a host 5 minutes off: each one's
    ``created_at`` falls between the store's times read just before and after, and a scrape on a
    host with a right clock shows the pending one as seconds old, not 5 minutes (or 0)."""
    store = _open(store_kind, request, tmp_path)
    service = JobService(store, settings(tmp_path / "home"))  # queues only: no engine runs the jobs
    conn = _connection(store, service)
    before = store.now()
    with on_host(offset_s):
        pending = service.enqueue_spec("builtin:source-bench", "spec-test")
        running, _ = store.enqueue_running(JobType.SYNC, str(conn.id), {}, "engine-a", store.now(), log_path)
    after = store.now()
    for job in (pending, running, store.get_job(pending.id)):
        assert before <= job.created_at <= after, f"{job.created_at} is not the store's time"
    assert store.get_job(running.id).status is JobStatus.RUNNING

    scraped_from = store.now()
    age = _oldest_pending_age(StoreCollector(store, {}), JobType.SPEC.value)
    scraped_to = store.now()
    assert (scraped_from - after).total_seconds() <= age <= (scraped_to - before).total_seconds()


@HOSTS
@STORES
def test_a_server_with_a_wrong_clock_shows_a_pending_jobs_true_age(
    store_kind: str, offset_s: float, request: FixtureRequest, tmp_path: Path
) -> None:
    """A job pending for an hour by the store's time, scraped through a server whose clock is 5
    minutes off: ``ferryman_oldest_pending_job_age_seconds`` is the hour, not 55 or 65 minutes
    (an alert on a stuck queue fired early or late by the server's clock)."""
    store = _open(store_kind, request, tmp_path)
    job = store.enqueue(JobType.DISCOVER, "source:1", {})
    queued_at = store.now() - timedelta(hours=1)
    with store.engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job.id).values(created_at=queued_at))
    collector = StoreCollector(store, {})  # built as the server builds it: no clock given
    before = store.now()
    with on_host(offset_s):
        age = _oldest_pending_age(collector, JobType.DISCOVER.value)
    after = store.now()
    assert (before - queued_at).total_seconds() <= age <= (after - queued_at).total_seconds()


def _fail(store: SqlJobStore, job: Job) -> None:
    """The job runs and fails for good (what an engine does when its attempts are spent)."""
    ((claimed, attempt),) = store.claim("engine-a", {"sync": 1}, store.now(), log_path, only=[job.id])
    store.fail_attempt(attempt, None, failure(), store.now())
    assert store.fail_job(claimed.id, store.now()).status is JobStatus.FAILED


def _make_due(store: SqlJobStore, conn: Connection) -> None:
    seen = store.get_connection_by_id(conn.id).next_run_at
    assert store.set_next_run(conn.id, seen, store.now())


@STORES
def test_a_failure_queued_on_a_slow_host_after_a_connection_is_enabled_again_counts(
    store_kind: str, request: FixtureRequest, tmp_path: Path
) -> None:
    """A connection the scheduler may disable after one failed sync is made active again (its
    failures count afresh from the store's time); its next sync, queued by a user on a host whose
    clock is 5 minutes behind, fails. The scheduler's next pass disables it instead of starting
    the due run. Before, the job was stamped 5 minutes before the re-enable: its failure was not
    counted and the failing connection ran on."""
    store = _open(store_kind, request, tmp_path)
    service = JobService(store, settings(tmp_path / "home"))
    conn = _connection(store, service)
    conn = service.update_connection(conn, status="inactive")
    enabled = service.update_connection(conn, status="active")
    assert enabled.active_since is not None
    with on_host(SLOW_S):
        job = service.enqueue_replication(enabled)
    _fail(store, job)
    _make_due(store, enabled)
    scheduler = Scheduler(service, SchedulerSettings(max_failed_jobs=1, max_failed_days=0))

    done = scheduler.tick()

    assert [c.id for c in done.disabled] == [conn.id] and done.created == []
    disabled = store.get_connection_by_id(conn.id)
    assert disabled.status == "inactive"
    assert "after 1 failed sync jobs in a row" in (disabled.status_reason or "")


@STORES
def test_only_failures_since_the_re_enable_count_whatever_host_queued_them(
    store_kind: str, request: FixtureRequest, tmp_path: Path
) -> None:
    """The other side: a sync that failed before a connection was made active again, queued on
    a host 5 minutes ahead, is not counted after the re-enable (it was stamped with the store's
    time, before it). Before, its stamp fell after the re-enable and the scheduler disabled a
    connection a user had just enabled, for a failure they had seen and dealt with."""
    store = _open(store_kind, request, tmp_path)
    service = JobService(store, settings(tmp_path / "home"))
    conn = _connection(store, service)
    with on_host(FAST_S):
        job = service.enqueue_replication(conn)
    _fail(store, job)
    conn = service.update_connection(store.get_connection_by_id(conn.id), status="inactive")
    enabled = service.update_connection(conn, status="active")
    _make_due(store, enabled)
    scheduler = Scheduler(service, SchedulerSettings(max_failed_jobs=1, max_failed_days=0))

    done = scheduler.tick()

    assert done.disabled == []
    assert [run.connection.id for run in done.created] == [conn.id]
    assert store.get_connection_by_id(conn.id).status == "active"
