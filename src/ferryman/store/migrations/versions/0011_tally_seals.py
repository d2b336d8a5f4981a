"""Tallies folded once: ``tally_seals`` and ``attempts.tally_batch``, so a ``/metrics`` scrape
reads the attempts and stream stats of the live part of the store, not all of history.

Until now every scrape summed every ended attempt (the duration histogram) and every stream stat
(records and bytes): about 230 ms of SQLite CPU at 100,000 jobs, growing with history. An ended
attempt and its stream stats never change again (stats are written only while the attempt runs),
so a scrape folds the ended attempts it finds into ``tally_seals`` once, marking them with the
fold's batch number in the same transaction, and from then on reads the folded figures plus the
rows whose ``tally_batch`` is still NULL (found through the partial index below).

Adding a nullable column and an empty table rewrites nothing; the existing attempts are folded
by the first scrapes after the upgrade, a bounded batch per scrape (store/tallies.py).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

_LIVE = sa.text("tally_batch IS NULL")

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("tally_batch", sa.BigInteger, nullable=True))
    op.create_index("ix_attempts_untallied", "attempts", ["id"], postgresql_where=_LIVE, sqlite_where=_LIVE)
    op.create_table(
        "tally_seals",
        sa.Column("family", sa.String(16), primary_key=True),
        sa.Column("type", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("sum_s", sa.Float, nullable=False),
        *(sa.Column(f"v{n}", sa.BigInteger, nullable=False) for n in range(1, 9)),
    )


def downgrade() -> None:
    op.drop_table("tally_seals")
    op.drop_index("ix_attempts_untallied", "attempts")
    # Not in batch mode: on SQLite that copies the table and drops the old one, and dropping
    # attempts would delete every stream stat through their ON DELETE CASCADE. SQLite (3.35 on)
    # drops a column in place.
    op.drop_column("attempts", "tally_batch")
