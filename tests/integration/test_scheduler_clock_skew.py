"""Schedulers on hosts whose clocks disagree, sharing one store: a scheduled run's job is made
when the store's time reaches the run, whatever each scheduler's host clock says, and a server
whose clock is off plans a connection's next run from the store's time too. Real Postgres (and
SQLite, where one file stands for the shared store), schedulers built as `ferryman server` and
`ferryman scheduler` build them (no Clock given).

A host's clock is this process's wall clock as Ferryman reads it (``SystemClock``, and the
stamps the store and the read views take from it), set ``OffsetClock`` seconds off for the time
of that host's pass; the store's time is untouched (Postgres' own clock; SQLite's, read by SQLite
itself)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from _pytest.fixtures import FixtureRequest

from ferryman import views
from ferryman.clock import OffsetClock, SystemClock
from ferryman.jobs.schedules import parse_schedule
from ferryman.jobs.states import JobType
from ferryman.scheduler import Pass, Scheduler
from ferryman.service import JobService
from ferryman.settings import SchedulerSettings
from ferryman.store import open_store, rows
from ferryman.store.base import Connection, JobStore
from tests.integration.test_engine import postgres_url, settings
from tests.integration.test_state_saving import _until

__all__ = ["postgres_url"]  # fixtures used here

FAST_S = 300.0  # a host 5 minutes ahead
SLOW_S = -300.0  # a host 5 minutes behind
# How far ahead of the store's time the runs are made due: room for the fast host's passes to
# come before it, short enough to wait out.
DUE_IN_S = 4.0
SCHEDULES = {"hourly": "every 1h", "cron": "cron 0 0 * * * ?"}


@contextmanager
def on_host(offset_s: float) -> Iterator[None]:
    """This process's wall clock, as Ferryman reads it, ``offset_s`` seconds off: what runs inside
    runs as on a host whose clock is wrong."""
    wrong = OffsetClock(offset_s)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SystemClock, "now", lambda self: wrong.now())
        patch.setattr(rows, "utcnow", wrong.now)
        patch.setattr(views, "utcnow", wrong.now)
        yield


def _open(store_kind: str, request: FixtureRequest, tmp_path: Path) -> JobStore:
    if store_kind == "postgres":
        return open_store(request.getfixturevalue("postgres_url"))
    return open_store(f"sqlite:///{tmp_path / 'f.db'}")


def _connections(store: JobStore, service: JobService) -> list[Connection]:
    source = store.create_actor("source", "src", "builtin:source-bench", {})
    destination = store.create_actor("destination", "dst", "builtin:destination-devnull", {})
    made = []
    for name, schedule in SCHEDULES.items():
        conn = store.create_connection(name, source.id, destination.id, {"streams": []})
        made.append(service.update_connection(conn, schedule=parse_schedule(schedule)))
    return made


def _pass(scheduler: Scheduler, offset_s: float) -> Pass:
    with on_host(offset_s):
        return scheduler.tick()


@pytest.mark.parametrize("store_kind", ["postgres", "sqlite"])
def test_schedulers_on_hosts_with_wrong_clocks_make_a_due_runs_job_when_the_stores_time_reaches_it(
    store_kind: str, request: FixtureRequest, tmp_path: Path
) -> None:
    """An hourly and a cron connection are made due 4 s ahead of the store's time; two schedulers
    share the store, one on a host 5 minutes ahead, one on a host 5 minutes behind. The fast one
    must make no job before the store's time reaches the run, and the slow one must make both
    jobs in its first pass after it. Before, each judged "due" by its host's clock: the fast one
    made the jobs 4 s early (5 minutes early for a run due later), the slow one 5 minutes late."""
    store = _open(store_kind, request, tmp_path)
    service = JobService(store, settings(tmp_path / "home"))  # queues only: no engine runs the jobs
    fast = Scheduler(service, SchedulerSettings())
    slow = Scheduler(service, SchedulerSettings())
    connections = _connections(store, service)
    due = store.now() + timedelta(seconds=DUE_IN_S)
    for conn in connections:
        assert store.set_next_run(conn.id, conn.next_run_at, due)

    with on_host(FAST_S):
        assert fast.plan() == 0  # nothing re-planned: their next runs are not "too far ahead"
    with on_host(SLOW_S):
        assert slow.plan() == 0
    assert {store.get_connection_by_id(c.id).next_run_at for c in connections} == {due}
    assert _pass(fast, FAST_S).created == []  # its host says 5 minutes past the run
    assert _pass(slow, SLOW_S).created == []
    _until(lambda: store.now() >= due, "the store's time reaches the run", 30)
    done = _pass(slow, SLOW_S)  # its host says 5 minutes before the run
    assert sorted(run.connection.name for run in done.created) == sorted(SCHEDULES)
    assert _pass(fast, FAST_S).created == []  # each run has its job: none made twice
    after = store.now()

    for conn in connections:
        (job,) = store.list_jobs(scope=str(conn.id), type=JobType.SYNC)
        assert job.scheduled_for == due
        assert due <= job.created_at <= after  # the store's time, and its lag is true
        upcoming = store.get_connection_by_id(conn.id).next_run_at
        schedule = parse_schedule(SCHEDULES[conn.name])
        assert upcoming == schedule.next_run(job.created_at)  # the next run, from the store's time


@pytest.mark.parametrize("offset_s", [FAST_S, SLOW_S], ids=["host-5-min-ahead", "host-5-min-behind"])
@pytest.mark.parametrize("store_kind", ["postgres", "sqlite"])
def test_a_server_with_a_wrong_clock_plans_a_connections_next_run_from_the_stores_time(
    store_kind: str, offset_s: float, request: FixtureRequest, tmp_path: Path
) -> None:
    """A connection given a schedule through a server whose clock is 5 minutes off runs next at
    the first slot after the store's time. Before, the server's clock planned it: 5 minutes ahead,
    a cron slot coming within those 5 minutes was skipped (every minute: five runs lost); behind,
    an hourly run came 5 minutes early."""
    store = _open(store_kind, request, tmp_path)
    service = JobService(store, settings(tmp_path / "home"))
    source = store.create_actor("source", "src", "builtin:source-bench", {})
    destination = store.create_actor("destination", "dst", "builtin:destination-devnull", {})
    planned: dict[str, tuple[datetime, datetime | None, datetime]] = {}
    for name, text in {"minutely": "cron 0 * * * * ?", "hourly": "every 1h"}.items():
        conn = store.create_connection(name, source.id, destination.id, {"streams": []})
        before = store.now()
        with on_host(offset_s):
            updated = service.update_connection(conn, schedule=parse_schedule(text))
        planned[text] = (before, updated.next_run_at, store.now())
    for text, (before, upcoming, after) in planned.items():
        schedule = parse_schedule(text)
        earliest, latest = schedule.next_run(before), schedule.next_run(after)
        assert upcoming is not None and earliest is not None and latest is not None
        assert earliest <= upcoming <= latest, text


def test_a_pass_reads_the_stores_time_once_however_many_runs_are_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's time costs a pass one query, not one per connection it decides on: a
    scheduler over thousands of due connections stays bound by its inserts."""
    store = open_store(f"sqlite:///{tmp_path / 'f.db'}")
    service = JobService(store, settings(tmp_path / "home"))
    source = store.create_actor("source", "src", "builtin:source-bench", {})
    destination = store.create_actor("destination", "dst", "builtin:destination-devnull", {})
    due = store.now()
    for n in range(5):
        conn = store.create_connection(f"c{n}", source.id, destination.id, {"streams": []})
        conn = service.update_connection(conn, schedule=parse_schedule("every 1h"))
        assert store.set_next_run(conn.id, conn.next_run_at, due)
    reads: list[datetime] = []
    read_store = store.now

    def counted() -> datetime:
        reads.append(read_store())
        return reads[-1]

    monkeypatch.setattr(store, "now", counted)
    scheduler = Scheduler(service, SchedulerSettings(batch=2))  # three due queries in the pass
    assert len(scheduler.tick().created) == 5
    assert len(reads) == 1
