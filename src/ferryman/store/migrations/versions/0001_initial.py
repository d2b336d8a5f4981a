"""The first schema: actors, connections, jobs, attempts, stream stats, connection state.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

A frozen snapshot: later changes go into new revisions, never here. Types are spelled out rather
than imported from ``ferryman.store.schema`` so that editing the schema module cannot change what
this revision creates.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LIVE = "type IN ('sync', 'reset_connection') AND status IN ('pending', 'running', 'incomplete')"
JOB_STATUSES = "'pending', 'running', 'incomplete', 'succeeded', 'failed', 'cancelled'"


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "actors",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("connector", sa.Text, nullable=False),
        sa.Column("config", _json(), nullable=False),
        _ts("created_at"),
        sa.UniqueConstraint("kind", "name", name="uq_actors_kind_name"),
        sa.CheckConstraint("kind IN ('source', 'destination')", name="ck_actors_kind"),
    )
    op.create_table(
        "connections",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column(
            "source_id", _id(), sa.ForeignKey("actors.id", name="fk_connections_source"), nullable=False
        ),
        sa.Column(
            "destination_id",
            _id(),
            sa.ForeignKey("actors.id", name="fk_connections_destination"),
            nullable=False,
        ),
        sa.Column("catalog", _json(), nullable=False),
        sa.Column("namespace_definition", sa.String(32), nullable=False),
        sa.Column("namespace_format", sa.Text, nullable=True),
        sa.Column("prefix", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("schedule", _json(), nullable=True),
        _ts("created_at"),
        sa.UniqueConstraint("name", name="uq_connections_name"),
    )
    op.create_index("ix_connections_source_id", "connections", ["source_id"])
    op.create_index("ix_connections_destination_id", "connections", ["destination_id"])

    op.create_table(
        "jobs",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("scope", sa.String(255), nullable=True),
        sa.Column("config", _json(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("started_at", nullable=True),
        _ts("next_attempt_at", nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.CheckConstraint(f"status IN ({JOB_STATUSES})", name="ck_jobs_status"),
    )
    op.create_index("ix_jobs_scope", "jobs", ["scope"])
    op.create_index("ix_jobs_status_id", "jobs", ["status", "id"])
    # The database, not only the code, keeps one live sync/reset job per connection.
    op.create_index(
        "uq_jobs_one_live_replication_per_scope",
        "jobs",
        ["scope"],
        unique=True,
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )

    op.create_table(
        "attempts",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column(
            "job_id",
            _id(),
            sa.ForeignKey("jobs.id", name="fk_attempts_job", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("output", _json(), nullable=True),
        sa.Column("failure_summary", _json(), nullable=True),
        sa.Column("log_path", sa.Text, nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("ended_at", nullable=True),
        sa.Column("engine_id", sa.String(255), nullable=True),
        _ts("heartbeat_at", nullable=True),
        sa.Column("pids", _json(), nullable=False),
        sa.UniqueConstraint("job_id", "number", name="uq_attempts_job_number"),
        sa.CheckConstraint("status IN ('running', 'failed', 'succeeded')", name="ck_attempts_status"),
    )
    op.create_index("ix_attempts_status_heartbeat", "attempts", ["status", "heartbeat_at"])

    op.create_table(
        "stream_stats",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column(
            "attempt_id",
            _id(),
            sa.ForeignKey("attempts.id", name="fk_stream_stats_attempt", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("namespace", sa.Text, nullable=False, server_default=""),
        sa.Column("records_emitted", sa.BigInteger, nullable=False),
        sa.Column("bytes_emitted", sa.BigInteger, nullable=False),
        sa.Column("records_committed", sa.BigInteger, nullable=True),
        sa.Column("bytes_committed", sa.BigInteger, nullable=True),
        sa.Column("estimated_records", sa.BigInteger, nullable=True),
        sa.Column("estimated_bytes", sa.BigInteger, nullable=True),
        sa.UniqueConstraint("attempt_id", "name", "namespace", name="uq_stream_stats_attempt_stream"),
    )

    op.create_table(
        "connection_state",
        sa.Column(
            "connection_id",
            _id(),
            sa.ForeignKey("connections.id", name="fk_connection_state_connection", ondelete="CASCADE"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("state", _json(), nullable=False),
        _ts("updated_at"),
        sa.Column("job_id", _id(), nullable=True),
    )


def downgrade() -> None:
    for table in ("connection_state", "stream_stats", "attempts", "jobs", "connections", "actors"):
        op.drop_table(table)
