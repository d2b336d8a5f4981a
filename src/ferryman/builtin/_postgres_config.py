"""destination-postgres's config: what it reads, its spec, how it connects, and its ``check``.

See :mod:`ferryman.builtin.destination_postgres` for the fields and what the destination does.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from ferryman.builtin._columns import quote
from ferryman.builtin._postgres_refusals import ServerUnreachable, config_refusal, passing_refusal
from ferryman.builtin._runtime import ConfigError, TransientError, object_schema, require_int
from ferryman.builtin._spill import directory_problem

NAME = "destination-postgres"
# How many streams one transaction of the destination may touch (see destination_postgres).
STREAMS_PER_TRANSACTION_ENV = "FERRYMAN_POSTGRES_STREAMS_PER_TRANSACTION"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class PostgresConfig:
    schema: str
    connect: dict[str, Any]  # keyword arguments of psycopg.connect
    hidden: tuple[str, ...] = ()  # secrets to keep out of error messages
    spill_directory: str | None = None  # None: the system's temporary directory

    def describe(self) -> str:
        """Where it connects, without the password."""
        if "conninfo" in self.connect:
            return "the configured url"
        c = self.connect
        return f"{c['user']}@{c['host']}:{c['port']}/{c['dbname']}"


def _optional_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"config field '{key}' must be a string")
    return value


def _ssl_mode(raw: dict[str, Any]) -> str:
    value = raw.get("ssl_mode", "prefer")
    if isinstance(value, dict):
        value = value.get("mode")
    if value not in SSL_MODES:
        raise ConfigError(f"config field 'ssl_mode' must be one of {', '.join(SSL_MODES)}")
    return str(value)


def _spill_directory(raw: dict[str, Any]) -> str | None:
    value = _optional_str(raw, "spill_directory")
    if value is None:
        return None
    path = os.path.expanduser(value)
    if not os.path.isabs(path):
        # Relative to what? The engine's working directory is nothing a user chooses on purpose.
        raise ConfigError(f"config field 'spill_directory' must be an absolute path, got {value!r}")
    return os.path.normpath(path)


def require_spill_directory(config: PostgresConfig) -> None:
    """A configured spill directory must exist and take files: said in one line before any
    record is read, rather than as a failure once the first records are held."""
    directory = config.spill_directory
    problem = None if directory is None else directory_problem(directory)
    if problem is not None:
        raise ConfigError(
            f"config field 'spill_directory': {directory} {problem}; give an existing directory"
            " the destination can write to, or leave the field out for the system's temporary"
            " directory"
        )


def parse_config(raw: dict[str, Any]) -> PostgresConfig:
    schema = _optional_str(raw, "schema") or "public"
    url = _optional_str(raw, "url")
    spill = _spill_directory(raw)
    common = {"connect_timeout": 10, "application_name": NAME}
    if url is not None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("config field 'url' must start with postgresql://")
        return PostgresConfig(schema, {"conninfo": url, **common}, hidden=(url,), spill_directory=spill)
    missing = [key for key in ("host", "database", "username") if _optional_str(raw, key) is None]
    if missing:
        raise ConfigError(f"config field '{missing[0]}' is required (or give a url)")
    password = raw.get("password")
    if password is not None and not isinstance(password, str):
        raise ConfigError("config field 'password' must be a string")
    connect = {
        "host": raw["host"],
        "port": require_int(raw, "port", 5432, minimum=1, maximum=65535),
        "dbname": raw["database"],
        "user": raw["username"],
        "sslmode": _ssl_mode(raw),
        **common,
    }
    if password:
        connect["password"] = password
    hidden = (password,) if password else ()
    return PostgresConfig(schema, connect, hidden=hidden, spill_directory=spill)


SPECIFICATION = object_schema(
    {
        "host": {"type": "string", "title": "Host", "order": 0},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 5432, "order": 1},
        "database": {"type": "string", "order": 2},
        "schema": {
            "type": "string",
            "default": "public",
            "description": "Schema for streams without a namespace.",
            "order": 3,
        },
        "username": {"type": "string", "order": 4},
        "password": {"type": "string", "airbyte_secret": True, "order": 5},
        "ssl_mode": {
            "description": "libpq's sslmode (a string, or Airbyte's {\"mode\": ...} object).",
            "oneOf": [
                {"type": "string", "enum": list(SSL_MODES)},
                {"type": "object", "properties": {"mode": {"type": "string", "enum": list(SSL_MODES)}}},
            ],
            "default": "prefer",
            "order": 6,
        },
        "url": {
            "type": "string",
            "airbyte_secret": True,
            "description": "postgresql://user:password@host:port/database, instead of the fields above.",
            "order": 7,
        },
        "spill_directory": {
            "type": "string",
            "title": "Spill directory",
            "description": "Absolute path of an existing, writable directory for the files that hold"
            " a stream's records after its last state until a state covers them (up to about their"
            " size as JSON). Default: the system's temporary directory (TMPDIR, else /tmp), often"
            " a small RAM disk.",
            "order": 8,
        },
    },
    title="PostgreSQL destination",
)


def _lock_slots_line(where: str, per_transaction: int | None) -> str:
    now = f" (now {per_transaction})" if per_transaction is not None else ""
    return (
        f"{NAME}: PostgreSQL ran out of lock slots (out of shared memory){where}: its lock table"
        " (max_locks_per_transaction x max_connections slots, shared by every session) was full."
        " A retry may pass once other sessions let go of theirs; if it keeps failing, set"
        f" {STREAMS_PER_TRANSACTION_ENV} lower{now} in the destination's environment, or raise the"
        " server's max_locks_per_transaction (which takes a restart)"
    )


def out_of_lock_slots(exc: BaseException, per_transaction: int | None) -> BaseException:
    """``exc`` as the one line to say, when it is the server's lock table found full (``out of
    shared memory``, hinting at max_locks_per_transaction); else ``exc`` itself. Other sessions
    may hold most of the slots and let go of them, so it is a transient error: retried."""
    if not isinstance(exc, psycopg.errors.OutOfMemory):
        return exc
    if "max_locks_per_transaction" not in (exc.diag.message_hint or ""):
        return exc
    return TransientError(_lock_slots_line("", per_transaction))


def connect(config: PostgresConfig) -> psycopg.Connection[Any]:
    """A connection (not autocommit), or a one-line error without the password in it: a
    :class:`TransientError` when the refusal passes on its own (the lock table full, every
    connection slot taken, the server starting, stopping or not listening: see
    :mod:`ferryman.builtin._postgres_refusals`), a :class:`ConfigError` when a retry would meet
    it again (a password, role, database, SSL or host refused), else a ``ConnectionError``."""
    try:
        conn = psycopg.connect(**config.connect)
    except (psycopg.Error, ValueError) as exc:
        message = " ".join(str(exc).split())
        # A refused connection carries no SQLSTATE, only the server's text (in English unless
        # its lc_messages says otherwise; then this reads as any other refusal).
        if "out of shared memory" in message and "max_locks_per_transaction" in message:
            raise TransientError(_lock_slots_line(f" at {config.describe()}", None)) from None
        passing = passing_refusal(message, config.describe())
        if passing is not None:
            raise passing from None
        for secret in config.hidden:
            message = message.replace(secret, "****")
        line = f"cannot connect to PostgreSQL at {config.describe()}: {message}"
        if config_refusal(message):
            raise ConfigError(line) from None
        raise ConnectionError(line) from None
    conn.execute("SET TIME ZONE 'UTC'")  # how widened timestamps read as text
    conn.execute("SET jit = off")  # compiling each merge's plan costs more than it saves
    conn.execute("SET temp_buffers = '256MB'")
    conn.execute("SET work_mem = '128MB'")
    conn.commit()
    return conn


def check(config: PostgresConfig) -> str | None:
    require_spill_directory(config)
    try:
        opened = connect(config)
    except ServerUnreachable:  # a FAILED check: the host or port may be wrong
        raise ConnectionError(
            f"cannot connect to PostgreSQL at {config.describe()}: connection refused: is the server"
            " running, and are the host and port right?"
        ) from None
    with opened as conn:
        probe = f"{quote(config.schema)}.{quote('_ferryman_check_' + uuid.uuid4().hex)}"
        try:
            # Only when missing: CREATE SCHEMA needs CREATE on the database, even with IF NOT EXISTS.
            if (
                conn.execute("SELECT FROM pg_namespace WHERE nspname = %s", (config.schema,)).fetchone()
                is None
            ):
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(config.schema)}")
            conn.execute(f"CREATE TABLE {probe} (probe integer)")
            conn.execute(f"INSERT INTO {probe} VALUES (1)")
        except psycopg.errors.OutOfMemory as exc:
            failure = out_of_lock_slots(exc, None)
            if failure is exc:
                raise
            raise failure from None
        conn.rollback()  # leaves nothing behind
    return None
