"""destination-postgres: one PostgreSQL table per stream, loaded with COPY.

Config::

    host, port            the server (port 5432 by default)
    database              the database (it must exist)
    username, password    the role to connect as (password secret, optional with trust or .pgpass)
    ssl_mode              libpq's sslmode: disable, allow, prefer (default), require, verify-ca,
                          verify-full; Airbyte's form {"mode": "require"} is accepted too
    url                   instead of the five above: postgresql://user:password@host:port/database
                          (secret)
    schema                the schema for streams without a namespace (default "public"); a
                          stream's namespace, when it has one, is its schema

Tables are named after their streams (at most 63 bytes, PostgreSQL's limit) and have the typed
shape of ``docs/destinations.md``, with PostgreSQL types (``bigint``, ``double precision``,
``text``, ``jsonb``, ``timestamp with time zone``...). A value that does not fit its column, or
that PostgreSQL cannot store (a NUL character), is NULL and listed in ``_airbyte_meta``.

Loading: records are buffered per stream and copied (``COPY ... FROM STDIN``) into the table when
the buffers are full, inside one transaction that the next commit ends. So a state is echoed only
after the transaction holding every record before it is committed; a destination that is killed
leaves its open transaction to be rolled back by the server. Sync modes behave as in
destination-duckdb: ``append``; ``append_dedup`` (rows copied into a temporary table and merged
at each commit: the latest by cursor, else by arrival, wins; ``_ab_cdc_deleted_at`` deletes);
``overwrite`` (a staging table replaces the table, in the commit's transaction, once a state
covers the stream or it completed; otherwise it is dropped and the old table kept).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from ferryman.builtin._catalog import ConfiguredStream, StreamKey
from ferryman.builtin._columns import quote
from ferryman.builtin._destination import load
from ferryman.builtin._postgres_tables import MODES, Table, copy_lines, merge_batch, prepare, table_for
from ferryman.builtin._runtime import ConfigError, Connector, Output, object_schema, require_int, run

NAME = "destination-postgres"
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class PostgresConfig:
    schema: str
    connect: dict[str, Any]  # keyword arguments of psycopg.connect
    hidden: tuple[str, ...] = ()  # secrets to keep out of error messages

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


def parse_config(raw: dict[str, Any]) -> PostgresConfig:
    schema = _optional_str(raw, "schema") or "public"
    url = _optional_str(raw, "url")
    common = {"connect_timeout": 10, "application_name": NAME}
    if url is not None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("config field 'url' must start with postgresql://")
        return PostgresConfig(schema, {"conninfo": url, **common}, hidden=(url,))
    missing = [key for key in ("host", "database", "username") if _optional_str(raw, key) is None]
    if missing:
        raise ConfigError(f"config field '{missing[0]}' is required (or give a url)")
    password = raw.get("password")
    if password is not None and not isinstance(password, str):
        raise ConfigError("config field 'password' must be a string")
    connect = {
        "host": raw["host"],
        "port": require_int(raw, "port", 5432, minimum=1),
        "dbname": raw["database"],
        "user": raw["username"],
        "sslmode": _ssl_mode(raw),
        **common,
    }
    if password:
        connect["password"] = password
    return PostgresConfig(schema, connect, hidden=(password,) if password else ())


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
    },
    title="PostgreSQL destination",
)


def connect(config: PostgresConfig) -> psycopg.Connection[Any]:
    """A connection (not autocommit), or a one-line error without the password in it."""
    try:
        conn = psycopg.connect(**config.connect)
    except (psycopg.Error, ValueError) as exc:
        message = " ".join(str(exc).split())
        for secret in config.hidden:
            message = message.replace(secret, "****")
        raise ConnectionError(f"cannot connect to PostgreSQL at {config.describe()}: {message}") from None
    conn.execute("SET TIME ZONE 'UTC'")  # how widened timestamps read as text
    conn.execute("SET jit = off")  # compiling each merge's plan costs more than it saves
    conn.commit()
    return conn


def check(config: PostgresConfig) -> str | None:
    with connect(config) as conn:
        probe = f"{quote(config.schema)}.{quote('_ferryman_check_' + uuid.uuid4().hex)}"
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(config.schema)}")
        conn.execute(f"CREATE TABLE {probe} (probe integer)")
        conn.execute(f"INSERT INTO {probe} VALUES (1)")
        conn.rollback()  # leaves nothing behind
    return None


class PostgresSink:
    """Copies each flush into the open transaction; a commit merges, swaps and commits it."""

    def __init__(self, config: PostgresConfig, tables: dict[StreamKey, Table]) -> None:
        self.config = config
        self.tables = tables
        self.buffers = {key: table.lines for key, table in tables.items()}
        self.records = 0
        self._conn: psycopg.Connection[Any] | None = None
        self.prepared = False

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            self._conn = connect(self.config)
        if not self.prepared:
            for number, table in enumerate(self.tables.values()):
                prepare(self._conn, table, number)
            self.prepared = True
        return self._conn

    def flush(self) -> None:
        for table in self.tables.values():
            if table.lines:
                copy_lines(self._connection(), table)

    def commit(self, scopes: set[StreamKey] | None) -> None:
        self.flush()
        busy = any(
            table.pending or (table.staging and (scopes is None or key in scopes))
            for key, table in self.tables.items()
        )
        if self.prepared and not busy:
            return
        conn = self._connection()
        for table in self.tables.values():
            if table.batch is not None and table.pending:
                merge_batch(conn, table)
        due = [
            table
            for key, table in self.tables.items()
            if table.staging is not None and (scopes is None or key in scopes)
        ]
        for table in due:
            conn.execute(f"DROP TABLE IF EXISTS {quote(table.schema)}.{quote(table.name)}")
            conn.execute(f"ALTER TABLE {table.target} RENAME TO {quote(table.name)}")
        conn.commit()
        for table in self.tables.values():
            self.records += table.pending
            if table.staging is not None:
                table.staged += table.pending
            table.pending = 0
        for table in due:
            table.staging = None

    def drop_staged(self) -> dict[StreamKey, int]:
        left = {key: table for key, table in self.tables.items() if table.staging is not None}
        if not left:
            return {}
        conn = self._connection()
        for table in left.values():
            conn.execute(f"DROP TABLE IF EXISTS {table.target}")
        conn.commit()
        dropped: dict[StreamKey, int] = {}
        for key, table in left.items():
            table.staging = None
            dropped[key] = table.staged
            self.records -= table.staged
        return dropped

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # an open transaction is rolled back
            self._conn = None


def write(config: PostgresConfig, catalog: list[ConfiguredStream], out: Output) -> None:
    tables = {stream.key: table_for(stream, config.schema) for stream in catalog}
    owners: dict[tuple[str, str], str] = {}
    for stream in catalog:
        table = tables[stream.key]
        owner = owners.setdefault((table.schema, table.name), stream.label)
        if owner != stream.label:
            raise ConfigError(f"streams '{owner}' and '{stream.label}' would share table {table.target}")
    sink = PostgresSink(config, tables)
    try:
        load(NAME, sink, out)
    finally:
        sink.close()
    out.log("INFO", f"{NAME}: loaded {sink.records} records into {len(tables)} tables")


CONNECTOR = Connector(
    name=NAME,
    specification=SPECIFICATION,
    spec_extra={
        "supportsIncremental": True,
        "supported_destination_sync_modes": list(MODES),
    },
    parse_config=parse_config,
    check=check,
    write=write,
)

if __name__ == "__main__":
    run(CONNECTOR)
