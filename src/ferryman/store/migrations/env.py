"""Alembic environment. Runs only from :func:`ferryman.store.migrate.upgrade`, which hands over an
open connection (``config.attributes["connection"]``) that already holds the migration lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from ferryman.store.migrate import MIGRATION_LOCK_TIMEOUT_MS, VERSION_TABLE

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
    if connection.dialect.name == "postgresql":
        # A lock a statement waits for blocks every later query on that table meanwhile (Postgres
        # queues them behind it): give up soon, and migrate.upgrade tries the whole upgrade again.
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{MIGRATION_LOCK_TIMEOUT_MS}ms'")
    context.run_migrations()
