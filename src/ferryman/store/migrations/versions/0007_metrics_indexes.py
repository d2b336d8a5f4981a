"""Indexes for /metrics: jobs by type and status (and id), read from the index alone; and the
scheduled jobs whose lag it reports.

``GET /metrics`` counts jobs ``GROUP BY type, status`` at every scrape; without this index that is
a scan of the whole jobs table, whose rows carry each job's config snapshot (57-166 ms at 100,000
jobs on SQLite against 4-10 ms with it; on Postgres 97-145 ms against 22-37 ms: see
docs/performance.md). The id makes it cover the joins from attempts and stream stats to their
job's type too (Postgres then builds its hash from the index, not from the 244 MB table; SQLite
keeps the rowid in every index anyway).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

_SCHEDULED = sa.text("scheduled_for IS NOT NULL")

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_type_status_id", "jobs", ["type", "status", "id"])
    # Scheduler lag reads only the jobs a scheduler made: a partial index keeps that from
    # reading the whole table (about 200 ms at 100,000 jobs on Postgres without it).
    op.create_index(
        "ix_jobs_scheduled_lag",
        "jobs",
        ["created_at", "scheduled_for"],
        postgresql_where=_SCHEDULED,
        sqlite_where=_SCHEDULED,
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_scheduled_lag", "jobs")
    op.drop_index("ix_jobs_type_status_id", "jobs")
