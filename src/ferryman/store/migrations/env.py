"""Alembic environment. Runs only from :func:`ferryman.store.migrate.upgrade`, which hands over an
open connection (``config.attributes["connection"]``) that already holds the migration lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from ferryman.store.migrate import VERSION_TABLE

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "ferryman's migrations run through ferryman.store.migrate.upgrade, not the alembic CLI"
    )

context.configure(
    connection=connection,
    target_metadata=None,
    version_table=VERSION_TABLE,
    # SQLite runs DDL inside a transaction too (we emit BEGIN ourselves): all or nothing.
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
