"""Notifications: webhooks (per workspace or per connection) and the outbox of their events.

An event row is written in the transaction that ends a job (or by whoever calls
``record_event``), one per matching webhook; dispatchers claim due rows, post them and record
the outcome. ``next_attempt_at`` doubles as the lease of a claimed row: a dispatcher that dies
mid-send leaves it due again once the lease has run out.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True)
    json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
    op.create_table(
        "webhooks",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("workspace_uuid", sa.String(36), sa.ForeignKey("workspaces.uuid"), nullable=False),
        # NULL: every connection of the workspace.
        sa.Column("connection_id", _id(), sa.ForeignKey("connections.id", ondelete="CASCADE"), nullable=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("events", json, nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
    )
    op.create_index("ix_webhooks_connection_id", "webhooks", ["connection_id"])
    op.create_table(
        "notification_events",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("webhook_id", _id(), sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        # No foreign keys: an event outlives the connection or job it tells of.
        sa.Column("connection_id", _id(), nullable=True),
        sa.Column("job_id", _id(), nullable=True),
        sa.Column("detail", json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tries", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", timestamp, nullable=False),
        sa.Column("claimed_by", sa.String(255), nullable=True),
        sa.Column("created_at", timestamp, nullable=False),
        sa.Column("ended_at", timestamp, nullable=True),
        sa.Column("last_status_code", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        # One event of a kind per job and webhook, however often the end is reported.
        sa.UniqueConstraint("webhook_id", "kind", "job_id", name="uq_notification_events_job"),
    )
    op.create_index("ix_notification_events_due", "notification_events", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_notification_events_due", "notification_events")
    op.drop_table("notification_events")
    op.drop_index("ix_webhooks_connection_id", "webhooks")
    op.drop_table("webhooks")
