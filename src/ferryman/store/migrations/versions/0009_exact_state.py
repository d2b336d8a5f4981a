"""A connection's state kept exactly as its source sent it, on Postgres too: ``json``, not JSONB.

JSONB refuses a NUL character (so the store wrote U+FFFD in its place), sorts object keys and
keeps the last of duplicate keys; the source got a different cursor back on its next sync.
Postgres' ``json`` keeps the text as written. A state stored before keeps what JSONB made of it
(its U+FFFD and its key order): the original is gone. SQLite keeps JSON text already: nothing to do.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# A JSON-escaped NUL (an even run of backslashes, then \u0000) becomes U+FFFD, as ferryman wrote
# it into JSONB before: JSONB refuses the NUL, so a downgrade would fail on the first one.
_NUL_TO_FFFD = r"regexp_replace(state::text, '(?<!\\)((?:\\\\)*)\\u0000', '\1\\ufffd', 'g')::jsonb"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE connection_state ALTER COLUMN state TYPE json USING state::json")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE connection_state ALTER COLUMN state TYPE jsonb USING {_NUL_TO_FFFD}")
