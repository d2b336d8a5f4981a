"""Bring a database to the newest schema, safely when several processes start at once.

The Alembic environment ships inside the package (``ferryman/store/migrations``) and runs from
code: no ``alembic.ini``, no CLI. Each process first checks the version table without a lock (the
common case, a database at head already, costs one query, and does not import Alembic: the head is
the newest file name in ``migrations/versions``, whose ``NNNN_`` prefix is its revision, which a
unit test checks against Alembic's own view). Otherwise it takes a lock that only one process holds
at a time, checks again, imports Alembic and upgrades:

* Postgres: ``pg_advisory_lock`` on a constant key, held by the connection that migrates;
* SQLite: ``fcntl.flock`` on ``<db>.migrate.lock`` next to the database file.

Every migration runs in one transaction (``env.py``), DDL included, on both databases: a process
killed, stopped or interrupted mid-upgrade leaves the store as it was, and the next command
upgrades it from there. On SQLite that transaction is ``BEGIN IMMEDIATE``: it takes the write lock
up front, so a process of the previous version still writing to the store (a worker's heartbeat)
is waited for, not a reason to fail ("database is locked": a deferred transaction that has read
cannot take the write lock once another process has written since).

A process that finds the lock taken (another one upgrading, or stopped or slow while it does; on
Postgres also a killed client's upgrade whose statement still runs on the server) waits for it,
and says so in one line on stderr once it has waited ``LOCK_QUIET_S`` (two processes started
together do not print it: the upgrade usually takes less), naming the lock and, on Postgres, the
server process that holds it. It waits until the lock is free, as before.

On Postgres the upgrade's transaction waits at most ``MIGRATION_LOCK_TIMEOUT_MS`` for a lock on a
table (``lock_timeout``): an ALTER TABLE waiting behind a long reader (a worker of the previous
version in a long statement or transaction) would otherwise hold up every later query on that
table, whoever runs it, for as long as the reader lasts. It is then rolled back whole and tried
again, 1 s, 2 s ... 30 s later, with one line saying so, until it gets its locks.

A store at a revision this build does not know, made by a newer ferryman, is refused in one line,
never downgraded.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from ferryman.errors import StoreUnavailable
from ferryman.private import open_private
from ferryman.store.db import BEGIN_IMMEDIATE, Database, sqlite_path

VERSION_TABLE = "ferryman_schema_version"
MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works as long as nothing else in the same Postgres database uses it: "ferryman" in ASCII.
PG_ADVISORY_KEY = 0x6665727279_6D616E
_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")
LOCK_QUIET_S = 2.0  # a lock held that long by another process is said, once
_LOCK_POLL_S = 0.1  # how often the lock is tried until then
MIGRATION_LOCK_TIMEOUT_MS = 2000  # Postgres: how long a migration's statement waits for a table lock
_RETRY_FIRST_S, _RETRY_MAX_S = 1.0, 30.0  # pauses between tries of an upgrade that timed out so

if TYPE_CHECKING:
    from alembic.config import Config


def alembic_config() -> Config:
    from alembic.config import Config  # only to upgrade: a store at head never imports Alembic

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def known_revisions() -> set[str]:
    """Every migration's revision, read off the file names (``0008_store_settings.py``)."""
    return {m[1] for path in (MIGRATIONS / "versions").iterdir() if (m := _REVISION_FILE.match(path.name))}


def head_revision() -> str | None:
    """The newest migration's revision."""
    return max(known_revisions(), default=None)


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at (None: not created yet, or more than one head)."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    return rows[0] if len(rows) == 1 else None


def _to_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def upgrade(db: Database, tell: Callable[[str], None] = _to_stderr) -> None:
    """Migrate ``db`` to head unless it is there already; idempotent and race-free. ``tell``
    gets the line said while another process's upgrade is waited for."""
    head = head_revision()
    with db.read() as conn:
        current = current_revision(conn)
    if current == head:
        return
    _refuse_unknown(db, current, head)
    with _migration_lock(db, head, tell) as conn:
        current = current_revision(conn)
        conn.commit()  # alembic begins its own transaction on a connection not in one
        if current == head:
            return
        _refuse_unknown(db, current, head)  # a newer ferryman may have upgraded it meanwhile
        from alembic import command

        config = alembic_config()
        config.attributes["connection"] = conn
        try:
            _upgrade_retrying_lock_timeouts(db, head, conn, lambda: command.upgrade(config, "head"), tell)
        except (SQLAlchemyError, StoreUnavailable) as exc:
            # All migrations run in one transaction (env.py): the store is as it was. A refusal
            # that passes (the server went away mid-migration) is still one: a worker waits it out.
            store = db.url.render_as_string(hide_password=True)
            reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
            reason = reason.removeprefix(f"the store {store} cannot be used: ")[:300]
            raise StoreUnavailable(
                f"the store {store} could not be upgraded to schema {head}: {reason}; nothing in it "
                "was changed, and the previous version of ferryman can still use it",
                passes=isinstance(exc, StoreUnavailable) and exc.passes,
            ) from None


def _upgrade_retrying_lock_timeouts(
    db: Database, head: str | None, conn: Connection, run: Callable[[], None], tell: Callable[[str], None]
) -> None:
    """``run()`` (the whole upgrade, one transaction), again after a pause each time a statement
    of it gave up waiting for a table lock (Postgres' ``lock_timeout``): rolled back, it changed
    nothing. The first time, one line says so."""
    pause, told = _RETRY_FIRST_S, False
    while True:
        try:
            run()
            return
        except (SQLAlchemyError, StoreUnavailable) as exc:
            if "due to lock timeout" not in str(getattr(exc, "orig", None) or exc):
                raise
        conn.rollback()
        if not told:
            told = True
            store = db.url.render_as_string(hide_password=True)
            tell(
                f"waiting for other sessions on the store {store} to release the tables its upgrade "
                f"to schema {head} changes (a long statement or transaction, perhaps of a worker of "
                "the previous version: see pg_stat_activity); trying again until they do, "
                f"{MIGRATION_LOCK_TIMEOUT_MS / 1000:g}s at a time (SIGTERM or Ctrl-C to stop)"
            )
        time.sleep(pause)
        pause = min(pause * 2, _RETRY_MAX_S)


def _refuse_unknown(db: Database, current: str | None, head: str | None) -> None:
    """A store at a revision this build has no migration for was upgraded by a newer ferryman:
    one line, and the store is left alone (Alembic would fail with a traceback; a downgrade would
    drop what the newer version keeps)."""
    if current is None or current in known_revisions():
        return
    raise StoreUnavailable(
        f"the store {db.url.render_as_string(hide_password=True)} is at schema {current}, newer than "
        f"this ferryman knows (its newest is {head}): a newer version of ferryman upgraded it; run "
        "that version (or newer) on it, this one does not change it"
    )


def _waiting_line(db: Database, head: str | None, holder: str) -> str:
    store = db.url.render_as_string(hide_password=True)
    return (
        f"waiting for another process's upgrade of the store {store} to schema {head} ({holder}); "
        "this command goes on once it ends (SIGTERM or Ctrl-C to stop)"
    )


def _take(try_lock: Callable[[], bool], lock: Callable[[], None], say: Callable[[], None]) -> None:
    """The lock: tried every ``_LOCK_POLL_S`` for ``LOCK_QUIET_S``, then ``say`` once and wait."""
    quiet_until = time.monotonic() + LOCK_QUIET_S
    while time.monotonic() < quiet_until:
        if try_lock():
            return
        time.sleep(_LOCK_POLL_S)
    if try_lock():
        return
    say()
    lock()


@contextmanager
def _migration_lock(db: Database, head: str | None, tell: Callable[[str], None]) -> Iterator[Connection]:
    if db.is_sqlite:
        path = sqlite_path(db.url)
        if path is None:  # in memory: one process by definition
            with db.engine.connect() as conn:
                yield conn
            return
        lock_path = path.with_name(path.name + ".migrate.lock")
        # Empty, but 0600 like everything else of the store's: nobody else need even open it.
        with open(open_private(lock_path, os.O_WRONLY | os.O_APPEND), "a") as lock_file:
            fd = lock_file.fileno()

            def try_flock() -> bool:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            _take(
                try_flock,
                lambda: fcntl.flock(fd, fcntl.LOCK_EX),
                lambda: tell(_waiting_line(db, head, f"it holds {lock_path}")),
            )
            try:
                with db.engine.connect() as conn:
                    # The write lock from the start (see the module doc): waits, up to the busy
                    # timeout, for a writer of the previous version instead of failing mid-way.
                    conn.execution_options(**{BEGIN_IMMEDIATE: True})
                    yield conn
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        return
    with db.engine.connect() as conn:

        def try_advisory() -> bool:
            taken = bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({PG_ADVISORY_KEY})").scalar())
            conn.commit()
            return taken

        def say() -> None:
            # pg_locks splits the 64-bit key: its high half in classid, its low half in objid.
            holder = conn.exec_driver_sql(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                f" AND classid = {PG_ADVISORY_KEY >> 32} AND objid = {PG_ADVISORY_KEY & 0xFFFFFFFF}"
                " AND objsubid = 1"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).scalar()
            conn.commit()
            who = f"server process {holder}, see pg_stat_activity" if holder else "it has ended since"
            tell(_waiting_line(db, head, f"it holds pg_advisory_lock({PG_ADVISORY_KEY}): {who}"))

        def lock() -> None:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({PG_ADVISORY_KEY})")
            conn.commit()

        _take(try_advisory, lock, say)
        try:
            yield conn
        finally:
            conn.rollback()
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({PG_ADVISORY_KEY})")
            conn.commit()
