"""The store's tables as SQLAlchemy Core objects, and the column types they share.

The migrations in ``migrations/versions`` create these tables; this module only describes them to
the queries. Three portable types smooth over SQLite and Postgres:

* :class:`UtcDateTime` always hands back timezone-aware UTC datetimes. Postgres keeps
  ``timestamptz``; SQLite keeps naive UTC text (``YYYY-MM-DD HH:MM:SS.ffffff``), which sorts and
  compares correctly as text.
* :data:`Json` is JSONB on Postgres and JSON text on SQLite; Python ``None`` is SQL NULL.
  JSONB cannot hold a NUL character (``db._dumps_for_postgres`` writes U+FFFD instead), sorts
  object keys and keeps the last of duplicate keys.
* :class:`ExactJson` is for the one document ferryman hands back to a connector, a connection's
  state: ``json`` on Postgres, which keeps the text as written (NULs and key order included),
  and the same JSON text as :data:`Json` on SQLite.

Nothing here imports SQLAlchemy's Postgres dialect (~20 ms and a few MB, with its drivers'
modules): on a SQLite store every command would pay for it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from ferryman.protocol.codec import dumps, loads

# A job is live in these statuses; the migration's partial unique index
# uq_jobs_one_live_replication_per_scope keeps one live job of these types per scope.
LIVE_STATUSES = ("pending", "running", "incomplete")
REPLICATION_TYPES = ("sync", "reset_connection")


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that goes in and comes out as an aware UTC datetime on every engine."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store only takes timezone-aware times")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def bound_late(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` for a statement's ``.values()``, each JSON document (a dict or a list) replaced
    by a named parameter, and the parameters that carry them, to pass to ``execute``.

    SQLAlchemy caches a compiled statement with the cache key of the first statement of its
    shape, and that key holds the first statement's values: a job's config (the whole catalog,
    megabytes for thousands of streams) or an attempt's output put in ``.values()`` stayed
    referenced by the cache for as long as the process lived. A parameter given to ``execute``
    is not part of the key."""
    kept: dict[str, Any] = {}
    late: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, dict | list):
            kept[name] = sa.bindparam(f"late_{name}")
            late[f"late_{name}"] = value
        else:
            kept[name] = value
    return kept, late


class PortableJson(sa.types.TypeDecorator[Any]):
    """JSON text on SQLite, JSONB on Postgres (what the migrations create): the JSONB type is
    looked up when a Postgres engine first compiles a statement, not when this module loads."""

    impl = sa.JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return JSONB(none_as_null=True)
        return self.impl_instance


class _PostgresJsonText(sa.types.UserDefinedType[str]):
    """Postgres' ``json``, bound as JSON text we wrote ourselves and cast by the server
    (``%(state)s::JSON``): psycopg's own JSON dumping, which the engine's serializer drives, would
    turn NULs into U+FFFD as it must for JSONB."""

    cache_ok = True
    render_bind_cast = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "JSON"


class ExactJson(sa.types.TypeDecorator[Any]):
    """A JSON document (an array or object) that comes back as it was written: ``json`` on
    Postgres (what migration 0009 makes of ``connection_state.state``), JSON text on SQLite.

    Postgres' ``json`` stores the text itself, so a NUL (``\\u0000``, which JSONB refuses) and
    the order of keys survive. It has no equality operator: compare what is read, in Python, never
    the column in SQL. psycopg hands the document back parsed; a driver that hands back its text
    gets it parsed here (the column never holds a bare JSON string)."""

    impl = sa.JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return _PostgresJsonText()
        return self.impl_instance

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name != "postgresql" or value is None:
            return value  # SQLite: sa.JSON writes it with the engine's serializer, codec.dumps
        return dumps(value).decode()  # integers past 64 bits exact, NULs as \u0000

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if dialect.name == "postgresql" and isinstance(value, str | bytes):
            return loads(value.encode() if isinstance(value, str) else value)
        return value


def json_type() -> sa.types.TypeEngine[Any]:
    return PortableJson()


Json = json_type()
# 64-bit ids on Postgres; SQLite needs exactly INTEGER PRIMARY KEY for its rowid alias.
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()

actors = sa.Table(
    "actors",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("connector", sa.Text, nullable=False),
    sa.Column("config", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("resources", Json, nullable=True),  # container limits of a docker: connector
    sa.Column("spec", Json, nullable=True),  # the connector's spec, kept to mask by; NULL: unknown
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),  # its id in the HTTP API
    sa.UniqueConstraint("kind", "name", name="uq_actors_kind_name"),
)

connections = sa.Table(
    "connections",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("source_id", Id, sa.ForeignKey("actors.id"), nullable=False),
    sa.Column("destination_id", Id, sa.ForeignKey("actors.id"), nullable=False),
    sa.Column("catalog", Json, nullable=False),
    sa.Column("namespace_definition", sa.String(32), nullable=False),
    sa.Column("namespace_format", sa.Text, nullable=True),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("schedule", Json, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),  # its id in the HTTP API
    sa.Column("next_run_at", UtcDateTime, nullable=True),  # NULL: nothing scheduled
    sa.Column("status_reason", sa.Text, nullable=True),  # why it is inactive (disabled by the scheduler)
    sa.Column("active_since", UtcDateTime, nullable=True),  # failures before it do not count
)
# Every column of a connection but its catalog (megabytes of JSON for a source of thousands of
# tables): what the reads that never look at the catalog select (rows.connection: UnreadCatalog).
CONNECTION_BUT_CATALOG = tuple(column for column in connections.c if column.name != "catalog")

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("scope", sa.String(255), nullable=True),
    sa.Column("config", Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=True),
    sa.Column("next_attempt_at", UtcDateTime, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False),
    # The due time a scheduled job was created for; unique per scope (one job per due run).
    sa.Column("scheduled_for", UtcDateTime, nullable=True),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("job_id", Id, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("output", Json, nullable=True),
    sa.Column("failure_summary", Json, nullable=True),
    sa.Column("log_path", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("ended_at", UtcDateTime, nullable=True),
    sa.Column("engine_id", sa.String(255), nullable=True),
    sa.Column("heartbeat_at", UtcDateTime, nullable=True),
    sa.Column("pids", Json, nullable=False),
    # The batch that folded this ended attempt (and its stream stats) into tally_seals; NULL while
    # /metrics still reads it from the rows (store/tallies.py).
    sa.Column("tally_batch", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("job_id", "number", name="uq_attempts_job_number"),
)

# A stream without a namespace is stored with namespace '' so the unique key treats it as one value
# (NULLs never collide in a unique index); it reads back as None.
stream_stats = sa.Table(
    "stream_stats",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("attempt_id", Id, sa.ForeignKey("attempts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("namespace", sa.Text, nullable=False),
    sa.Column("records_emitted", sa.BigInteger, nullable=False),
    sa.Column("bytes_emitted", sa.BigInteger, nullable=False),
    sa.Column("records_committed", sa.BigInteger, nullable=True),
    sa.Column("bytes_committed", sa.BigInteger, nullable=True),
    sa.Column("estimated_records", sa.BigInteger, nullable=True),
    sa.Column("estimated_bytes", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("attempt_id", "name", "namespace", name="uq_stream_stats_attempt_stream"),
)

# What /metrics counted of the attempts already folded (attempts.tally_batch set): per job type
# and attempt status, the duration histogram (``count``, ``sum_s``, cumulative buckets ``v1``..``v8``);
# per job type, the stream totals (``v1``..``v4``: records and bytes emitted, then committed).
TALLY_VALUES = 8
tally_seals = sa.Table(
    "tally_seals",
    metadata,
    sa.Column("family", sa.String(16), primary_key=True),  # 'durations' or 'streams'
    sa.Column("type", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True),  # '' for streams
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("sum_s", sa.Float, nullable=False),
    *(sa.Column(f"v{n}", sa.BigInteger, nullable=False) for n in range(1, TALLY_VALUES + 1)),
)

connection_state = sa.Table(
    "connection_state",
    metadata,
    sa.Column(
        "connection_id",
        Id,
        sa.ForeignKey("connections.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    # Handed back to the source as it sent it: json on Postgres, not JSONB (see ExactJson).
    sa.Column("state", ExactJson(), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("job_id", Id, nullable=True),
)

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# A connector a client may name by slug or UUID: the reference it runs (pypi:, docker:, ...).
definitions = sa.Table(
    "definitions",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("slug", sa.String(255), nullable=False),
    sa.Column("connector", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.UniqueConstraint("kind", "slug", name="uq_definitions_kind_slug"),
)

# API clients (client credentials); the secret is kept only as a salted hash.
applications = sa.Table(
    "applications",
    metadata,
    sa.Column("client_id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("secret_hash", sa.String(255), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# Notification webhooks: per workspace (connection_id NULL) or per connection; ``events`` is the
# list of event kinds they want (failure, success, cancelled, disabled).
webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("uuid", sa.String(36), nullable=False, unique=True),
    sa.Column("workspace_uuid", sa.String(36), sa.ForeignKey("workspaces.uuid"), nullable=False),
    sa.Column("connection_id", Id, sa.ForeignKey("connections.id", ondelete="CASCADE"), nullable=True),
    sa.Column("url", sa.Text, nullable=False),  # may hold a token (Slack's do): never shown whole
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("events", Json, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# The outbox: one row per event and webhook, written in the transaction that ends the job.
notification_events = sa.Table(
    "notification_events",
    metadata,
    sa.Column("id", Id, primary_key=True, autoincrement=True),
    sa.Column("webhook_id", Id, sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("connection_id", Id, nullable=True),
    sa.Column("job_id", Id, nullable=True),
    sa.Column("detail", Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | delivered | failed
    sa.Column("tries", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False),  # due time, and a claim's lease
    sa.Column("claimed_by", sa.String(255), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("ended_at", UtcDateTime, nullable=True),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.UniqueConstraint("webhook_id", "kind", "job_id", name="uq_notification_events_job"),
)

# Facts about the store as a whole, by name: ``engine`` is the kind of engine whose workers work
# it (local or temporal), recorded when its first worker starts.
store_settings = sa.Table(
    "store_settings",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
)
