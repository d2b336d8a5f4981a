"""What the scheduler needs: when each connection's next run is due, why a connection was
disabled, and the due time a scheduled job was created for.

``jobs.scheduled_for`` is unique per scope: two schedulers sharing one database can never both
create a job for the same due run of a connection (NULLs, the jobs nobody scheduled, never
collide). Connections with a schedule get their first ``next_run_at`` from the scheduler when it
starts (it plans every active scheduled connection that has none).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    timestamp = sa.DateTime(timezone=True)
    # Plain ADD COLUMNs, nullable: no table rebuild on SQLite (see 0004).
    op.add_column("connections", sa.Column("next_run_at", timestamp, nullable=True))
    op.add_column("connections", sa.Column("status_reason", sa.Text, nullable=True))
    # Failures before this moment do not count towards disabling the connection (it was
    # re-enabled since); NULL: since the connection was created.
    op.add_column("connections", sa.Column("active_since", timestamp, nullable=True))
    op.create_index("ix_connections_next_run_at", "connections", ["next_run_at"])

    op.add_column("jobs", sa.Column("scheduled_for", timestamp, nullable=True))
    op.create_index("uq_jobs_scope_scheduled_for", "jobs", ["scope", "scheduled_for"], unique=True)
    # The scheduler reads when each due connection's last job ended: max(updated_at) per scope.
    op.create_index("ix_jobs_scope_updated_at", "jobs", ["scope", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_scope_updated_at", "jobs")
    op.drop_index("uq_jobs_scope_scheduled_for", "jobs")
    op.drop_column("jobs", "scheduled_for")
    op.drop_index("ix_connections_next_run_at", "connections")
    for column in ("active_since", "status_reason", "next_run_at"):
        op.drop_column("connections", column)
