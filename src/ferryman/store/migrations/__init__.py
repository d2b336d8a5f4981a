"""Alembic environment of the store; :mod:`ferryman.store.migrate` runs it."""
