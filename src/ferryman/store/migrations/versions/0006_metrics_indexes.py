"""An index for /metrics: jobs by type and status (and id), read from the index alone.

``GET /metrics`` counts jobs ``GROUP BY type, status`` at every scrape; without this index that is
a scan of the whole jobs table, whose rows carry each job's config snapshot (57-166 ms at 100,000
jobs on SQLite against 4-10 ms with it; on Postgres 97-145 ms against 22-37 ms: see
docs/performance.md). The id makes it cover the joins from attempts and stream stats to their
job's type too (Postgres then builds its hash from the index, not from the 244 MB table; SQLite
keeps the rowid in every index anyway).

Revision ID: 0006
Revises: 0004 (the scheduler's 0005 comes between them once both are merged)
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_type_status_id", "jobs", ["type", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_type_status_id", "jobs")
