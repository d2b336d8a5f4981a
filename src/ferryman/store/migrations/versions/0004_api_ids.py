"""What the HTTP API needs: UUIDs for sources, destinations and connections, one default
workspace, connector definitions and applications (client credentials, secrets kept as hashes).

Existing sources, destinations and connections get a fresh UUID each here; new rows get one when
they are created.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DEFAULT_WORKSPACE_NAME = "default"


def _add_uuids(table: str) -> None:
    # No batch mode (a copy-and-swap of the table) on SQLite: other tables point at these, and
    # with foreign keys on SQLite refuses to drop a table that rows refer to. A plain ADD COLUMN
    # and a unique index need no rebuild on either database.
    op.add_column(table, sa.Column("uuid", sa.String(36), nullable=True))
    bind = op.get_bind()
    ids = bind.execute(sa.text(f"SELECT id FROM {table}")).scalars().all()
    for row_id in ids:
        bind.execute(
            sa.text(f"UPDATE {table} SET uuid = :uuid WHERE id = :id"),
            {"uuid": str(uuid.uuid4()), "id": row_id},
        )
    if bind.dialect.name != "sqlite":  # SQLite cannot add NOT NULL to a column in place
        op.alter_column(table, "uuid", existing_type=sa.String(36), nullable=False)
    op.create_index(f"uq_{table}_uuid", table, ["uuid"], unique=True)


def upgrade() -> None:
    _add_uuids("actors")
    _add_uuids("connections")
    timestamp = sa.DateTime(timezone=True)
    workspaces = op.create_table(
        "workspaces",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
    )
    now = datetime.now(UTC)
    created = now.replace(tzinfo=None) if op.get_bind().dialect.name == "sqlite" else now
    op.bulk_insert(
        workspaces, [{"uuid": str(uuid.uuid4()), "name": DEFAULT_WORKSPACE_NAME, "created_at": created}]
    )
    op.create_table(
        "definitions",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("slug", sa.String(255), nullable=False),
        sa.Column("connector", sa.Text, nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
        sa.UniqueConstraint("kind", "slug", name="uq_definitions_kind_slug"),
    )
    op.create_table(
        "applications",
        sa.Column("client_id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("created_at", timestamp, nullable=False),
    )

    # The API lists jobs in created order, of one connection or of all.
    op.create_index("ix_jobs_created_at_id", "jobs", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_created_at_id", "jobs")
    op.drop_table("applications")
    op.drop_table("definitions")
    op.drop_table("workspaces")
    for table in ("connections", "actors"):
        op.drop_index(f"uq_{table}_uuid", table)
        op.drop_column(table, "uuid")  # SQLite 3.35+ drops a column in place
