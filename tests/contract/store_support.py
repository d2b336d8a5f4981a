"""Fixtures and helpers of the store contract suite: one fresh database per test, on every engine.

SQLite: a new file under the test's tmp dir. Postgres (127.0.0.1:5432, user postgres): a new
database ``ferryman_test_<random>`` per test, dropped afterwards. When Postgres is unreachable its
tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from ferryman.jobs.states import JobType
from ferryman.store import Attempt, Job, SqlJobStore, open_store

PG_HOST = os.environ.get("FERRYMAN_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("FERRYMAN_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("FERRYMAN_TEST_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("FERRYMAN_TEST_PG_ADMIN_DB", "test")
ENGINES = ["sqlite", "postgres"]
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ALL_SLOTS = {"spec": 5, "check": 5, "discover": 5, "sync": 5}


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=PG_ADMIN_DB, autocommit=True, connect_timeout=3
    )


@functools.cache
def _postgres_problem() -> str | None:
    try:
        with _admin() as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        return f"PostgreSQL is not reachable at {PG_USER}@{PG_HOST}:{PG_PORT}/{PG_ADMIN_DB}: {reason}"
    return None


def require_postgres() -> None:
    problem = _postgres_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{problem} (CI=true: the store contract must run on Postgres)")
    pytest.skip(problem)


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a brand-new, empty database (no schema yet)."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@contextmanager
def fresh_database(engine: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database on ``engine`` (sqlite: a file under ``tmp_path``;
    postgres: a database dropped afterwards), for fixtures of any scope."""
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'ferryman.db'}"
        return
    require_postgres()
    name = f"ferryman_test_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with _admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def end_sessions(store_url: str) -> None:
    """End every session on a Postgres store's database, as a restart of the server does, and
    wait until their processes are gone."""
    database = store_url.rsplit("/", 1)[1]
    with _admin() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )


@pytest.fixture
def store(store_url: str) -> Iterator[SqlJobStore]:
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


def log_path(job_id: int, number: int) -> str:
    return f"/workspace/{job_id}/{number}/logs.log"


def claim_one(store: SqlJobStore, now: datetime = T0, engine: str = "engine-a") -> tuple[Job, Attempt]:
    claimed = store.claim(engine, ALL_SLOTS, now, log_path)
    assert len(claimed) == 1, claimed
    return claimed[0]


def running_sync(store: SqlJobStore, scope: str = "1", now: datetime = T0) -> tuple[Job, Attempt]:
    store.enqueue(JobType.SYNC, scope, {"connection_id": scope})
    return claim_one(store, now)


def failure(message: str = "boom", type_: str = "system_error") -> dict[str, Any]:
    return {"failures": [{"failure_type": type_, "message": message}], "partial_success": False}


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def elapse(store: SqlJobStore, seconds: float) -> None:
    """What ``seconds`` passing does to the notification outbox: each pending event's due time
    (its next try, or the end of its claim's lease) comes that much sooner. The store's clock,
    which judges them, cannot be moved by a test; what it is compared with can."""
    from ferryman.store.schema import notification_events

    with store.engine.begin() as conn:
        found = conn.execute(
            sa.select(notification_events.c.id, notification_events.c.next_attempt_at).where(
                notification_events.c.status == "pending"
            )
        ).all()
        for event_id, due in found:
            sooner = due - timedelta(seconds=seconds)
            conn.execute(
                notification_events.update()
                .where(notification_events.c.id == event_id)
                .values(next_attempt_at=sooner)
            )


# -- several processes at once -------------------------------------------------------------------


def run_together(
    work: str, args: list[str], count: int, workdir: Path, setup: str = "", timeout: float = 60
) -> list[Any]:
    """Start ``count`` interpreters that each run ``setup``, then wait until all are ready and run
    ``work`` at the same moment. Each child finds ``argv[1:]`` = its index, then ``args``, and
    prints its result as JSON on its last line; the results come back in child order."""
    go = workdir / "go"
    procs = []
    for index in range(count):
        ready = workdir / f"ready-{index}"
        code = "\n".join(
            [
                "import json, sys, time",
                "from pathlib import Path",
                setup,
                f"Path({str(ready)!r}).touch()",
                f"while not Path({str(go)!r}).exists(): time.sleep(0.002)",
                work,
            ]
        )
        argv = [sys.executable, "-c", code, str(index), *args]
        procs.append(
            (ready, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        )
    try:
        deadline = time.monotonic() + timeout
        while not all(ready.exists() for ready, _ in procs):
            assert all(proc.poll() is None for _, proc in procs), "a child died before it was ready"
            assert time.monotonic() < deadline, "children never got ready"
            time.sleep(0.01)
        go.touch()
        results = []
        for _, proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
