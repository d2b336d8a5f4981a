"""Two real `ferryman scheduler` processes on one Postgres: exactly one job per due run.

Each round starts both at once with ``--once --now <the due minute>`` (the burst mode, so the
test picks the time instead of waiting for it); between rounds the test ends the jobs, as a
worker would, so the next minute's runs are due again. The database's unique index on
(scope, scheduled_for) is what keeps the second scheduler from making a second job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest

from ferryman.clock import ManualClock
from ferryman.jobs.schedules import parse_schedule
from ferryman.service import JobService
from ferryman.settings import Settings
from ferryman.store import SqlJobStore, open_store
from tests.contract.store_support import PG_HOST, PG_PORT, PG_USER, T0, _admin, log_path, require_postgres

CONNECTIONS = 30
ROUNDS = 5
SCHEDULERS = 2


@pytest.fixture
def pg_url() -> Iterator[str]:
    require_postgres()
    name = f"ferryman_test_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _one_pass_each(url: str, home: str, when: str) -> list[dict[str, object]]:
    env = {**os.environ, "FERRYMAN_DATABASE_URL": url, "FERRYMAN_HOME": home}
    argv = [sys.executable, "-m", "ferryman", "scheduler", "--once", "--now", when, "--json"]
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(SCHEDULERS)
    ]
    events = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        events.append(json.loads(out.strip().splitlines()[-1]))
    return events


def _end_live_jobs(store: SqlJobStore, clock: ManualClock) -> None:
    """What a worker would do: run each pending job to success (ten seconds after it was made)."""
    claimed = store.claim("test-worker", {"sync": CONNECTIONS}, clock.now(), log_path)
    for _, attempt in claimed:
        store.succeed_attempt(attempt, {}, clock.now() + timedelta(seconds=10))


def test_two_scheduler_processes_make_one_job_per_due_run(pg_url: str, tmp_path: object) -> None:
    store = open_store(pg_url)
    try:
        clock = ManualClock(T0)
        service = JobService(store, Settings(), clock=clock)
        source = store.create_actor("source", "src", "builtin:source-bench", {})
        destination = store.create_actor("destination", "dst", "builtin:destination-devnull", {})
        every_minute = parse_schedule("cron 0 * * * * ?")
        for n in range(CONNECTIONS):
            made = store.create_connection(f"c{n}", source.id, destination.id, {"streams": []})
            service.update_connection(made, schedule=every_minute)

        for minute in range(1, ROUNDS + 1):
            clock.advance((T0 + timedelta(minutes=minute) - clock.now()).total_seconds())
            events = _one_pass_each(pg_url, str(tmp_path), clock.now().isoformat())
            created = [job for event in events for job in event["created"]]  # type: ignore[attr-defined]
            assert len(created) == len(set(created)) == CONNECTIONS, events
            _end_live_jobs(store, clock)

        jobs = store.list_jobs(limit=10_000)
        assert len(jobs) == CONNECTIONS * ROUNDS
        per_run = Counter((job.scope, job.scheduled_for) for job in jobs)
        assert set(per_run.values()) == {1}
        due_times = {job.scheduled_for for job in jobs}
        assert due_times == {T0 + timedelta(minutes=m) for m in range(1, ROUNDS + 1)}
    finally:
        store.close()
