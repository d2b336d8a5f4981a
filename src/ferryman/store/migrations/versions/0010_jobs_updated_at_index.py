"""An index on jobs ``(updated_at, id)``: the order of a job list by last change.

Orchestrators' clients (Airflow, Dagster) poll ``GET /v1/jobs?orderBy=updatedAt|DESC`` for the
jobs that changed last; the config API's ``jobs/list`` takes ``orderByField: updatedAt`` too.
Without this index each page read and sorted every job (their rows carry each job's config
snapshot), so it cost more with every job kept; with it, a page reads its 20 entries off the
index, as the order by ``created_at`` does with ``ix_jobs_created_at_id`` (0004). The id breaks
ties, in the order the store gives (``updated_at``, then ``id``), so no sort is left to do.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_updated_at_id", "jobs", ["updated_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_updated_at_id", "jobs")
