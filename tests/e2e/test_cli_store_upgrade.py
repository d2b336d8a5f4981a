"""An upgrade of a store with history in it (migrations 0009-0011 over jobs, attempts, stream
stats, connections and their states), interrupted, raced, refused or run out of disk, by a real
``ferryman`` process on SQLite and Postgres: what was committed stays as it was, and the next
command finishes the upgrade.

To interrupt a migration at a known point without sleeps, the command runs under a small wrapper
that pauses it (on a pipe) just before one statement of the upgrade, tells the test so, and waits:
the test then signals it there. The pause is the only thing added; the process, its database and
its migrations are the real ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command

from ferryman.store import SqlJobStore, open_store
from ferryman.store.migrate import (
    PG_ADVISORY_KEY,
    VERSION_TABLE,
    alembic_config,
    current_revision,
    head_revision,
)
from ferryman.store.schema import attempts, jobs, stream_stats
from tests.contract.store_support import fresh_database
from tests.e2e.test_cli_store_faults import mounted

OLD = "0008"  # before the state column's type change (0009), an index (0010) and tallies (0011)
IN_0010 = "CREATE INDEX ix_jobs_updated_at_id"  # a statement inside the upgrade's transaction
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DEADLINE_S = 120.0

# Runs ``ferryman ARGS`` paused just before the first statement that starts with PREFIX: writes
# one line to fd REACHED and blocks reading fd GO (the test never writes to it; its end closed,
# the command goes on).
PAUSED = """
import os, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine

reached, go, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
paused = []

def pause(conn, cursor, statement, *_):
    if not paused and statement.lstrip().startswith(prefix):
        paused.append(statement)
        os.write(reached, b"paused\\n")
        os.read(go, 1)

event.listen(Engine, "before_cursor_execute", pause)
sys.argv = ["ferryman", *sys.argv[4:]]
from ferryman.start import main
main()
"""


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


def env_for(url: str, home: Path) -> dict[str, str]:
    return {**os.environ, "FERRYMAN_HOME": str(home), "FERRYMAN_DATABASE_URL": url}


def sqlite_url(home: Path) -> str:
    return f"sqlite:///{home / 'ferryman.db'}"


def old_store_with_history(url: str, jobs_count: int = 600) -> None:
    """A store at OLD holding what one in use holds: actors, connections and their states, jobs
    with attempts and stream stats (ended, failed, pending)."""
    with open_store(url) as store:
        sources = [store.create_actor("source", f"s{n}", "builtin:source-bench", {"n": n}) for n in range(3)]
        sink = store.create_actor("destination", "d", "builtin:destination-devnull", {})
        for n in range(6):
            made = store.create_connection(f"c{n}", sources[n % 3].id, sink.id, {"streams": []})
            # Key order and a non-ASCII text kept as written: what 0009 is about on Postgres.
            store.save_state(made.id, [{"type": "LEGACY", "data": {"z": n, "a": "é", "cursor": 10**20 + n}}])
        job_rows, attempt_rows, stat_rows = [], [], []
        for job_id in range(1, jobs_count + 1):
            created = T0 + timedelta(seconds=job_id)
            status = "pending" if job_id > jobs_count - 20 else ("failed" if job_id % 7 == 0 else "succeeded")
            job_rows.append(
                {"id": job_id, "type": "sync", "scope": str(job_id), "config": {"n": job_id},
                 "status": status, "created_at": created, "updated_at": created, "started_at": None,
                 "next_attempt_at": None, "cancel_requested": False, "scheduled_for": None}
            )  # fmt: skip
            if status == "pending":
                continue
            attempt_rows.append(
                {"id": job_id, "job_id": job_id, "number": 0, "status": status, "output": None,
                 "failure_summary": None, "log_path": f"/w/{job_id}/0/logs.log", "created_at": created,
                 "updated_at": created, "ended_at": created + timedelta(seconds=30), "engine_id": "e",
                 "heartbeat_at": created, "pids": []}
            )  # fmt: skip
            stat_rows += [
                {"attempt_id": job_id, "name": f"s{k}", "namespace": "", "records_emitted": job_id * k,
                 "bytes_emitted": 9 * k, "records_committed": job_id * k, "bytes_committed": 9 * k}
                for k in range(3)
            ]  # fmt: skip
        with store.engine.begin() as conn:
            conn.execute(jobs.insert(), job_rows)
            conn.execute(attempts.insert(), attempt_rows)
            conn.execute(stream_stats.insert(), stat_rows)
            if store.dialect == "postgresql":
                conn.exec_driver_sql("SELECT setval('jobs_id_seq', (SELECT max(id) FROM jobs))")
                conn.exec_driver_sql("SELECT setval('attempts_id_seq', (SELECT max(id) FROM attempts))")
            config = alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, OLD)


def contents(url: str, columns: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Every table's rows (of ``columns``' tables and columns only, when given), in key order,
    and the revision, read without migrating."""
    opened = SqlJobStore.open(url, migrate_schema=False)
    found: dict[str, Any] = {}
    with opened, opened.engine.connect() as conn:
        found["revision"] = current_revision(conn)
        inspector = sa.inspect(conn)
        found["indexes"] = {i["name"] for i in inspector.get_indexes("jobs")}
        for table in columns or inspector.get_table_names():
            if table == VERSION_TABLE:
                continue
            names = [c["name"] for c in inspector.get_columns(table)]
            if columns is not None:
                names = [n for n in names if n in columns[table]]
            key = inspector.get_pk_constraint(table)["constrained_columns"] or names
            query = f"SELECT {', '.join(names)} FROM {table} ORDER BY {', '.join(key)}"
            found[table] = {"columns": names, "rows": [tuple(row) for row in conn.exec_driver_sql(query)]}
    return found


def rows_of(found: dict[str, Any]) -> dict[str, Any]:
    return {table: value for table, value in found.items() if table not in ("revision", "indexes")}


@contextlib.contextmanager
def paused_before(prefix: str, url: str, home: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``ferryman ARGS`` started, and yielded once it waits just before the statement."""
    reached_r, reached_w = os.pipe()
    go_r, go_w = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-c", PAUSED, str(reached_w), str(go_r), prefix, *args],
        env=env_for(url, home), pass_fds=(reached_w, go_r), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    os.close(reached_w)
    os.close(go_r)
    try:
        with os.fdopen(reached_r, "rb") as reached:
            line = reached.readline()  # EOF (b""): the command ended before the statement
        if not line:
            _, stderr = process.communicate(timeout=DEADLINE_S)
            pytest.fail(f"the command never reached {prefix!r}: exit {process.returncode}\n{stderr}")
        yield process
    except BaseException:
        process.kill()
        process.communicate(timeout=DEADLINE_S)
        raise
    finally:
        os.close(go_w)  # a paused command still alive goes on; the caller collects its end


def ferryman(url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferryman", *args], env=env_for(url, home), capture_output=True,
        text=True, timeout=DEADLINE_S,
    )  # fmt: skip


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_an_upgrade_interrupted_mid_way_keeps_every_row_and_the_next_command_finishes_it(
    store_url: str, tmp_path: Path, how: signal.Signals
) -> None:
    """Paused inside the upgrade's transaction, after 0009 (on Postgres a rewrite of every
    connection's state) and before 0010's index, then killed, stopped or interrupted: nothing of
    0009 or 0010 stays, the revision is still the old one, and the next command upgrades it."""
    old_store_with_history(store_url)
    before = contents(store_url)
    assert before["revision"] == OLD and "ix_jobs_updated_at_id" not in before["indexes"]
    home = tmp_path / "home"
    with paused_before(IN_0010, store_url, home, "jobs", "list") as process:
        process.send_signal(how)
        _, stderr = process.communicate(timeout=DEADLINE_S)
    if how == signal.SIGINT:
        assert process.returncode == 130 and stderr.strip() == "error: interrupted", stderr
    else:
        assert process.returncode == -how, stderr
    assert contents(store_url) == before  # not one statement of the upgrade stayed

    again = ferryman(store_url, home, "jobs", "list", "--limit", "1")
    assert again.returncode == 0 and again.stderr == "", again.stderr
    after = contents(store_url, {t: v["columns"] for t, v in rows_of(before).items()})
    assert after["revision"] == head_revision()
    assert rows_of(after) == rows_of(before)
    assert "ix_jobs_updated_at_id" in after["indexes"]


def test_a_store_newer_than_this_ferryman_is_refused_in_one_line_and_left_as_it_is(
    store_url: str, tmp_path: Path
) -> None:
    """A store a newer ferryman upgraded (a revision this build has no migration for): every
    command says so in one line, exit 2, and neither migrates nor downgrades it. Before: an
    Alembic traceback ("Can't locate revision identified by '9999'"), exit 1, at every command."""
    with open_store(store_url) as store:
        store.create_actor("source", "kept", "builtin:source-bench", {})
        with store.engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    before = contents(store_url)
    home = tmp_path / "home"
    for args in (["jobs", "list"], ["sources", "list"], ["worker"]):
        result = ferryman(store_url, home, *args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert "is at schema 9999, newer than this ferryman knows" in lines[0]
        assert f"its newest is {head_revision()}" in lines[0]
    assert contents(store_url) == before


def test_an_upgrade_waits_for_a_write_of_the_previous_version_instead_of_failing(tmp_path: Path) -> None:
    """A worker of the previous version still running while the new one upgrades the store: its
    write (a heartbeat, a state) lands between the upgrade's first read and its first change. On
    SQLite the upgrade used to run in a deferred transaction, which cannot take the write lock
    once another process has written since it read: "could not be upgraded ...: database is
    locked", exit 2, at any command started then. Now the upgrade takes the write lock first, and
    the other writer waits for it (as it does for any writer, up to its busy timeout)."""
    home = tmp_path / "home"
    url = sqlite_url(home)
    old_store_with_history(url)
    # Paused before its first write: the revision moved to 0009.
    with paused_before(f"UPDATE {VERSION_TABLE}", url, home, "jobs", "list") as process:
        other = sqlite3.connect(home / "ferryman.db", timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO store_settings VALUES ('written-meanwhile', 'x', '2026-01-01')")
            other.execute("COMMIT")
            waited = False
        except sqlite3.OperationalError as exc:  # the upgrade holds the write lock: wait for it
            assert "locked" in str(exc)
            waited = True
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 0 and stderr == "", stderr
    if waited:
        other.execute("INSERT INTO store_settings VALUES ('written-meanwhile', 'x', '2026-01-01')")
    other.close()
    after = contents(url)
    assert after["revision"] == head_revision()
    assert ("written-meanwhile", "x", "2026-01-01") in after["store_settings"]["rows"]


def test_an_upgrade_that_runs_out_of_disk_keeps_the_store_and_finishes_once_there_is_room(
    tmp_path: Path,
) -> None:
    """SQLite on a small tmpfs, filled up but for a little: the upgrade's new indexes do not fit.
    One line, exit 2, the store as it was; room made, the next command upgrades it."""
    home = tmp_path / "home"
    with mounted(home, "-t", "tmpfs", "-o", "size=24m", "tmpfs"):
        url = sqlite_url(home)
        old_store_with_history(url, jobs_count=6000)
        with contextlib.closing(sqlite3.connect(home / "ferryman.db")) as conn:
            conn.execute("VACUUM")  # the downgrade's freed pages would take the new indexes
        before = contents(url)
        room = os.statvfs(home)
        filler = home / "filler"
        filler.write_bytes(b"\0" * max(room.f_bavail * room.f_frsize - 96 * 1024, 0))
        full = ferryman(url, home, "jobs", "list")
        lines = full.stderr.strip().splitlines()
        assert full.returncode == 2 and len(lines) == 1, full.stderr
        assert f"could not be upgraded to schema {head_revision()}" in lines[0]
        assert "the disk is full" in lines[0] and "nothing in it was changed" in lines[0]
        assert lines[0].count("the store ") == 1, lines[0]  # it used to name the store twice
        assert contents(url) == before
        filler.unlink()
        assert ferryman(url, home, "jobs", "list").returncode == 0
        after = contents(url, {t: v["columns"] for t, v in rows_of(before).items()})
        assert after["revision"] == head_revision() and rows_of(after) == rows_of(before)


@pytest.mark.parametrize(
    ("args", "how"),
    [(["worker"], signal.SIGTERM), (["worker"], signal.SIGINT), (["scheduler"], signal.SIGTERM),
     (["server", "--no-engine", "--port", "0"], signal.SIGTERM)],
    ids=["worker-SIGTERM", "worker-Ctrl-C", "scheduler-SIGTERM", "server-SIGTERM"],
)  # fmt: skip
def test_a_long_running_command_stopped_during_its_upgrade_stops_and_the_upgrade_is_whole(
    tmp_path: Path, args: list[str], how: signal.Signals
) -> None:
    """``ferryman worker`` (scheduler, server) told to stop while its start-up upgrade runs stops
    at once instead of starting, and the upgrade's transaction is rolled back with it: the store
    is at its old revision with every row, and the next command upgrades it. Before, the signal
    was only recorded and dropped once the store opened: the worker started as if never told (a
    supervisor's stop took a second signal, or its SIGKILL)."""
    home = tmp_path / "home"
    url = sqlite_url(home)
    old_store_with_history(url)
    before = contents(url)
    reached_r, reached_w = os.pipe()
    go_r, go_w = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-c", PAUSED, str(reached_w), str(go_r), IN_0010, *args],
        env=env_for(url, home), pass_fds=(reached_w, go_r), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    os.close(reached_w)
    os.close(go_r)
    try:
        assert os.read(reached_r, 100) == b"paused\n"
        process.send_signal(how)  # pending before the pause ends: its handler runs first
        os.close(go_w)
        assert process.stdout is not None
        first = process.stdout.readline().strip()
        assert first == "error: interrupted while waiting for the store", first
        assert process.wait(timeout=DEADLINE_S) == 130
    finally:
        os.close(reached_r)
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=DEADLINE_S)
    assert contents(url) == before  # rolled back whole: the old revision, every row
    assert ferryman(url, home, "jobs", "list").returncode == 0
    after = contents(url, {t: v["columns"] for t, v in rows_of(before).items()})
    assert after["revision"] == head_revision() and rows_of(after) == rows_of(before)


@contextlib.contextmanager
def migration_lock_held(url: str) -> Iterator[str]:
    """The store's migration lock, held here as another process's upgrade holds it; yields what
    the waiting line names as its holder."""
    if url.startswith("sqlite"):
        db_path = Path(url.removeprefix("sqlite:///"))
        with open(db_path.with_name(db_path.name + ".migrate.lock"), "a") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            yield f"it holds {db_path}.migrate.lock"
        return
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as holder:
        holder.execute(f"SELECT pg_advisory_lock({PG_ADVISORY_KEY})")
        pid = holder.info.backend_pid
        yield f"it holds pg_advisory_lock({PG_ADVISORY_KEY}): server process {pid}, see pg_stat_activity"


def test_a_command_waiting_for_another_process_s_upgrade_says_so_once_then_goes_on(
    store_url: str, tmp_path: Path
) -> None:
    """Another process holds the migration lock (an upgrade stopped or slow, or on Postgres a
    killed client's statement still running on the server): a command started meanwhile says in
    one line that it waits, and for whom, then runs once the lock is free. Before, it waited
    without a word, however long."""
    old_store_with_history(store_url, jobs_count=30)
    home = tmp_path / "home"
    with migration_lock_held(store_url) as holder:
        process = subprocess.Popen(
            [sys.executable, "-m", "ferryman", "jobs", "list", "--limit", "1"], env=env_for(store_url, home),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert process.stderr is not None
            # Bounded: the old code waited without a word, for as long as the lock was held.
            said, _, _ = select.select([process.stderr], [], [], DEADLINE_S)
            line = process.stderr.readline() if said else "(nothing said)"  # EOF: "" if it ended
            assert line.startswith("waiting for another process's upgrade of the store "), line
            assert f"to schema {head_revision()} ({holder})" in line, line
            assert process.poll() is None  # it waits
        except BaseException:
            process.kill()
            process.communicate(timeout=DEADLINE_S)
            raise
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 0 and stderr == "", stderr  # the line was said once
    assert contents(store_url)["revision"] == head_revision()


def test_a_postgres_upgrade_behind_a_long_reader_does_not_hold_up_other_queries_on_its_table(
    tmp_path: Path,
) -> None:
    """A session of another version holds a lock on ``attempts`` (a long statement or
    transaction) while a new command upgrades: 0011's ALTER TABLE waits for it, and Postgres
    queues every later query on ``attempts`` behind the ALTER. It used to wait for as long as
    the reader lasted, so every worker's heartbeat and ``jobs list`` hung with it. Now the
    upgrade gives up after ``lock_timeout`` (rolled back whole), says so once, and tries again:
    other queries are held up a moment at most, and the upgrade lands once the reader is done."""
    with fresh_database("postgres", tmp_path) as url:
        with open_store(url) as store, store.engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "0010")  # 0011 adds a column to attempts
        plain = url.replace("postgresql+psycopg", "postgresql")
        home = tmp_path / "home"
        with psycopg.connect(plain) as holder, psycopg.connect(plain, autocommit=True) as other:
            holder.execute("LOCK TABLE attempts IN ACCESS SHARE MODE")
            process = subprocess.Popen(
                [sys.executable, "-m", "ferryman", "jobs", "list"], env=env_for(url, home),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                waiting_sql = (
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> %s"
                    " AND datname = current_database()"
                )

                def upgrade_waits() -> bool:
                    return other.execute(waiting_sql, (holder.info.backend_pid,)).fetchone() is not None

                deadline = time.monotonic() + DEADLINE_S
                while not upgrade_waits():
                    assert time.monotonic() < deadline and process.poll() is None, "never waited"
                    time.sleep(0.05)
                # Bounded, so the old code fails instead of hanging: it queued this for ever.
                other.execute("SET statement_timeout = '60s'")
                assert other.execute("SELECT count(*) FROM attempts").fetchone() == (0,)
                assert process.stderr is not None
                said, _, _ = select.select([process.stderr], [], [], DEADLINE_S)
                line = process.stderr.readline() if said else "(nothing said)"
                assert line.startswith("waiting for other sessions on the store "), line
                assert "to release the tables its upgrade to schema 0011 changes" in line, line
                assert process.poll() is None
            except BaseException:
                process.kill()
                process.communicate(timeout=DEADLINE_S)
                raise
            holder.rollback()  # the reader is done: the next try upgrades
            _, stderr = process.communicate(timeout=DEADLINE_S)
        assert process.returncode == 0 and stderr == "", stderr  # one line, said once
        assert contents(url)["revision"] == head_revision()
