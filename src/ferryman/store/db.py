"""Where the store lives and how ferryman talks to it: URLs, engines and transactions.

SQLite (the default, ``FERRYMAN_HOME/ferryman.db``) runs in WAL mode so readers never wait for
the writer, with a 30 s busy timeout and foreign keys on. Python's sqlite3 module is told to keep
out of transaction control (``isolation_level = None``) and SQLAlchemy's ``begin`` hook emits the
BEGIN itself, as SQLAlchemy's SQLite documentation recommends: reads open a plain (deferred)
transaction, writes open ``BEGIN IMMEDIATE``, which takes the write lock up front. A write
transaction therefore never has to upgrade a read lock, the step that fails at once with
"database is locked" no matter the busy timeout, and every write sees the newest data.

Postgres (``FERRYMAN_DATABASE_URL=postgresql+psycopg://...``) uses READ COMMITTED; the queries
that need more take row locks themselves (``FOR UPDATE SKIP LOCKED``) and every status write is
compare-and-set. There every statement is a round trip to the server, and a job's queue work is
bound by them, not by CPU, so they are counted:

* Reads run in autocommit. Under READ COMMITTED each statement reads its own snapshot inside a
  transaction too, so a read transaction bought nothing but its BEGIN and ROLLBACK round trips.
  A write of one statement (``write_statement``: a heartbeat, an attempt's pids) is its own
  transaction, as atomic as in BEGIN ... COMMIT.
* A connection is pinged (``SELECT 1``) on checkout only when in doubt: its socket has something
  to read while idle (a server that ended the session, say on restart, has sent its goodbye and
  closed it), or it sat idle for ``IDLE_PING_S``. A failed ping invalidates the pool, so every
  connection to the old server is replaced, and the request goes on on a new connection: as
  SQLAlchemy's ``pool_pre_ping`` would, without its round trip on every checkout.
* A connect gives up after ``CONNECT_TIMEOUT_S`` (libpq's ``connect_timeout``) unless the URL
  sets its own (``?connect_timeout=30``, which wins; under 2 counts as 2, 0 as psycopg's 130): a
  server that accepts the connection but never answers (frozen, or behind a firewall that drops
  its packets) is then "not reachable", which the long-running commands wait out, instead of a
  connect that lasts as long as the operating system's TCP timeout.
* Once connected, TCP keepalives (after 30 s idle, 3 probes 10 s apart) and ``tcp_user_timeout``
  (60 s for sent data to be acknowledged) end a connection whose server the network lost: the
  statement fails as "not reachable" after about a minute, and the engine backs off and tries
  again as for any outage. Without them a statement in flight waited for ever and one sent into
  the void ~15 minutes (measured: docs/reliability.md). A server that is only stuck (stopped,
  swapping) still acknowledges at the TCP level, so nothing here cuts it off: its statements wait
  and go on when it does, which is what a pause calls for; no ``statement_timeout`` either, which
  a stuck server could not enforce and which would cut off a long migration. Each option in the
  URL's query wins over ferryman's.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, InvalidatePoolError, NoSuchModuleError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from ferryman.errors import UserInputError
from ferryman.private import create_private_file, tighten
from ferryman.protocol.codec import dumps
from ferryman.settings import ferryman_home
from ferryman.store.faults import translate_errors
from ferryman.store.schema import UtcDateTime

DATABASE_URL_ENV = "FERRYMAN_DATABASE_URL"
SQLITE_FILENAME = "ferryman.db"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# An execution option: a SQLite transaction of this connection begins with BEGIN IMMEDIATE.
BEGIN_IMMEDIATE = "ferryman_begin_immediate"
# Postgres: a pooled connection idle for this long is pinged before use (see the module doc).
IDLE_PING_S = 10.0
CONNECT_TIMEOUT_S = 10  # Postgres: how long one connect may take, unless the URL says (module doc)
# Postgres: libpq's options ferryman sets unless the URL sets them (module doc). TCP keepalives
# after 30 s idle, 3 probes 10 s apart, and sent data left unacknowledged for 60 s, end a
# connection whose server the network lost in about a minute, not hours.
PG_CONNECT_DEFAULTS = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,  # milliseconds
}
_IDLE_SINCE = "ferryman_idle_since"


def default_sqlite_url(home: Path | None = None) -> str:
    return f"sqlite:///{(home or ferryman_home()) / SQLITE_FILENAME}"


def database_url(url: str | None = None, home: Path | None = None) -> str:
    """The store's URL: the one given, else ``FERRYMAN_DATABASE_URL``, else SQLite in the home."""
    return url or os.environ.get(DATABASE_URL_ENV) or default_sqlite_url(home)


def parse_url(url: str) -> URL:
    """The URL, checked: SQLite or Postgres through psycopg 3. A bad one is a one-line error."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserInputError(
            f"cannot read the database URL {_redacted(url)!r}: expected sqlite:///PATH "
            "or postgresql+psycopg://USER@HOST/DB"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg"):
            raise UserInputError(f"use postgresql+psycopg:// (psycopg 3) in {_redacted(url)!r}")
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if driver not in ("", "pysqlite"):
            raise UserInputError(f"only the built-in sqlite driver is supported, got {parsed.drivername!r}")
        return parsed
    raise UserInputError(
        f"unsupported database {backend!r} in {_redacted(url)!r}: use sqlite:/// or postgresql+psycopg://"
    )


def _redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1] if "@" in url else url


def _dumps(value: Any) -> str:
    return dumps(value).decode()  # integers past 64 bits too (a state's cursor): codec.dumps


# A JSON-escaped NUL (not an escaped backslash followed by "u0000"): an even run of backslashes,
# then the escape. Postgres' JSONB refuses it ("\\u0000 cannot be converted to text").
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _dumps_for_postgres(value: Any) -> str:
    """JSON for a JSONB column: each NUL character becomes U+FFFD, the replacement character.
    Connectors do send NULs (in a log or error message, a config), and a NUL in a job's failure
    would otherwise make the write that ends the attempt fail. A connection's state is not
    written through here: it is a ``json`` column that keeps NULs (``schema.ExactJson``)."""
    text = _dumps(value)
    return _NUL_ESCAPE.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def sqlite_path(url: URL) -> Path | None:
    """The database file of a SQLite URL, None for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def create_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    # SQLAlchemy puts connect_args over the URL's query: given both, the user's setting would lose.
    connect_args = {name: value for name, value in PG_CONNECT_DEFAULTS.items() if name not in url.query}
    try:
        engine = sa.create_engine(url, json_serializer=_dumps_for_postgres, connect_args=connect_args)
    except NoSuchModuleError:  # pragma: no cover - psycopg is a dependency
        raise UserInputError(f"no driver for {url.drivername}") from None
    _ping_when_in_doubt(engine)
    return engine


def connect_timeout_s(url: URL) -> int | None:
    """How long a connect to this Postgres store may take, in seconds, as libpq counts it (the
    URL's ``connect_timeout``, else ``CONNECT_TIMEOUT_S``); None for SQLite, or where the URL
    leaves it to psycopg (0: its own 130 s)."""
    if url.get_backend_name() == "sqlite":
        return None
    raw = url.query.get("connect_timeout", CONNECT_TIMEOUT_S)
    try:
        seconds = int(raw if isinstance(raw, (str, int)) else raw[-1])
    except ValueError:
        return None  # libpq refuses it at connect, with its own message
    return None if seconds <= 0 else max(seconds, 2)


def _ping_when_in_doubt(engine: Engine) -> None:
    """Ping a pooled connection on checkout only when it may be dead (see the module doc)."""

    def idle_from_now(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        idle_since = record.info.get(_IDLE_SINCE)
        recent = idle_since is not None and time.monotonic() - idle_since < IDLE_PING_S
        if recent and not _has_input(dbapi_connection):
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise InvalidatePoolError(f"the connection failed its ping: {exc}") from exc

    event.listen(engine.pool, "connect", idle_from_now)
    event.listen(engine.pool, "checkin", idle_from_now)
    event.listen(engine.pool, "checkout", checkout)


def _has_input(dbapi_connection: Any) -> bool:
    """Whether an idle psycopg connection's socket is readable (or gone): the server spoke
    unasked, which it does before it closes the session. A system call, not a round trip."""
    try:
        poller = select.poll()  # not select(): it refuses descriptors past 1023
        poller.register(dbapi_connection.pgconn.socket, select.POLLIN)
        return bool(poller.poll(0))
    except Exception:  # closed already, or no socket at all
        return True


def _sqlite_engine(url: URL) -> Engine:
    path = sqlite_path(url)
    kwargs: dict[str, Any] = {"json_serializer": _dumps}
    if path is None:
        # One shared connection, or every new connection would see its own empty database.
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    elif _read_only(path):
        # SQLite reads a WAL database only where it can make the -shm file, unless it is told the
        # file cannot change: so a read-only store is opened so, and commands that only read
        # (`jobs list`) work; a write fails with "readonly database", one line.
        uri = f"file:{quote(str(path))}?mode=ro&immutable=1"
        kwargs["creator"] = lambda: sqlite3.connect(uri, uri=True, check_same_thread=False)
    else:
        # SQLite creates the file 0644 and gives its -wal and -shm files the file's mode: made
        # 0600 first, none of them is ever readable by others (the store holds configs).
        # An existing file is only chmod-ed, never opened here: closing any descriptor of a file
        # drops every POSIX lock this process holds on it, SQLite's too, so a second store on the
        # same file in one process (a library user's, a test's) let another process take this
        # one's connections for gone, checkpoint and delete the WAL under them: their later
        # commits went to a deleted file and, checkpointed on close, overwrote the others'.
        if path.exists():
            tighten(path)
        else:
            create_private_file(path)
        for companion in ("-wal", "-shm", "-journal"):
            tighten(path.with_name(path.name + companion))
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    engine = sa.create_engine(url, **kwargs)
    writable = path is not None and "creator" not in kwargs

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, see the module doc
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if writable:
                _use_wal(cursor)
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(BEGIN_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _read_only(path: Path) -> bool:
    """An existing database this process may not write, or whose directory (where SQLite keeps
    its -wal and -shm files) it may not write: a read-only mount, an immutable file, a user's."""
    return path.exists() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def _use_wal(cursor: Any) -> None:
    """Put the database file in WAL mode, waiting for other connections that hold it.

    Switching a fresh file to WAL needs it to itself, and SQLite answers "database is locked" at
    once instead of calling the busy handler when another process is opening or migrating the
    same file; so wait here, up to the busy timeout. The mode is kept in the file: once one
    connection has switched it, the others find it already in WAL."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            # A file system without WAL support answers with the mode it keeps: that stands.
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            held = "locked" in str(exc) or "busy" in str(exc)
            if not held or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def sql_now(is_sqlite: bool, shift_s: float = 0.0) -> sa.ColumnElement[datetime]:
    """:meth:`Database.now` ``shift_s`` seconds ahead (behind, when negative), for code that has a
    connection but not its Database."""
    if is_sqlite:
        return sa.func.strftime("%Y-%m-%d %H:%M:%f000", "now", f"{shift_s:+.6f} seconds", type_=UtcDateTime)
    now = sa.func.clock_timestamp(type_=UtcDateTime)
    return now if not shift_s else now + sa.cast(f"{shift_s:.6f} seconds", sa.Interval)


class Database:
    """An engine plus the kinds of transaction the store uses."""

    def __init__(self, url: URL, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or create_engine(url)
        translate_errors(self.engine, url.render_as_string(hide_password=True), connect_timeout_s(url))
        self.dialect = self.engine.dialect.name
        # SQLite: this process's writers queue here. Left to SQLite, a writer that finds the
        # lock taken sleeps in its busy handler (1, 2, 5, 10, 15, 20, 25 ms ...) however soon the
        # lock is free: with an engine's threads writing at once, those sleeps capped the job rate.
        self._write_lock = threading.RLock() if self.is_sqlite else None

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction that only reads; rolled back at the end. Postgres: statements in
        autocommit, each on its own snapshot as under READ COMMITTED (see the module doc)."""
        with self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A transaction that only reads, all its statements on one snapshot (rolled back at the
        end): SQLite's read transaction is one already; Postgres, whose reads run in autocommit
        (:meth:`read`), gets REPEATABLE READ. For figures read in several statements that must
        agree with each other (``/metrics``' folded and unfolded tallies)."""
        if self.is_sqlite:
            with self.read() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that writes: committed on success, rolled back on an exception.

        SQLite: ``BEGIN IMMEDIATE``, so writers queue on the busy timeout instead of failing
        (those of this process on a lock of its own first)."""
        with contextlib.ExitStack() as held:
            if self._write_lock is not None:
                held.enter_context(self._write_lock)
            with self.engine.connect() as conn:
                if self.is_sqlite:
                    conn.execution_options(**{BEGIN_IMMEDIATE: True})
                with conn.begin():
                    yield conn

    @contextmanager
    def write_statement(self) -> Iterator[Connection]:
        """A write of one statement. Postgres: in autocommit, the statement its own transaction
        (no BEGIN and COMMIT round trips); SQLite: as ``write``. Never for two statements."""
        if self.is_sqlite:
            with self.write() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    def now(self, before_s: float = 0.0, after_s: float = 0.0) -> sa.ColumnElement[datetime]:
        """The database's own time, ``before_s`` seconds ago or ``after_s`` seconds ahead, as
        SQL: what liveness and retry backoffs are judged by, so every engine, whatever its host's
        clock says, reads the same time. Postgres: the server's ``clock_timestamp()``; SQLite (one
        host): its ``'now'``, in the text form UtcDateTime stores (milliseconds, padded to six
        digits, so it sorts with the rest)."""
        return sql_now(self.is_sqlite, after_s - before_s)

    def stamp(self) -> sa.ColumnElement[datetime]:
        """The database's time, as one statement's stamp: the same value wherever it appears in
        that statement (a new row's ``created_at`` and ``updated_at`` alike), read back with
        RETURNING. Postgres: the statement's start, ``statement_timestamp()``; SQLite: its
        ``'now'``, which SQLite reads once per statement."""
        if self.is_sqlite:
            return sql_now(True)
        return sa.func.statement_timestamp(type_=UtcDateTime)

    def dispose(self) -> None:
        self.engine.dispose()

    def insert(self, table: sa.Table) -> Any:
        """An INSERT that can take ``on_conflict_do_update`` on this engine (SQLite or Postgres)."""
        if self.is_sqlite:
            return sqlite_insert(table)
        from sqlalchemy.dialects.postgresql import insert as pg_insert  # not on SQLite: ~20 ms

        return pg_insert(table)
