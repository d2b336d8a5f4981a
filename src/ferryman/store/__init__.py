"""Ferryman's store: jobs, attempts, stream stats, sources, destinations, connections, state.

    store = open_store()                       # FERRYMAN_DATABASE_URL, else FERRYMAN_HOME/ferryman.db
    store = open_store("postgresql+psycopg://postgres@127.0.0.1/ferryman")

Opening a store brings its schema to the newest revision (safe when several processes start at
once). :mod:`ferryman.store.base` defines the rows and the operations.
"""

from __future__ import annotations

from pathlib import Path

from ferryman.errors import StoreError, StoreUnavailable
from ferryman.private import secure_home
from ferryman.settings import ferryman_home
from ferryman.store.base import (
    Actor,
    AlreadyExists,
    Attempt,
    Connection,
    ConnectionBusy,
    ConnectionLabel,
    Job,
    JobStore,
    JobTotals,
    NotFound,
    StaleWrite,
    StreamStat,
)
from ferryman.store.db import DATABASE_URL_ENV, database_url, default_sqlite_url
from ferryman.store.sql import SqlJobStore

__all__ = [
    "DATABASE_URL_ENV",
    "Actor",
    "AlreadyExists",
    "Attempt",
    "Connection",
    "ConnectionBusy",
    "ConnectionLabel",
    "Job",
    "JobStore",
    "JobTotals",
    "NotFound",
    "SqlJobStore",
    "StaleWrite",
    "StoreError",
    "StoreUnavailable",
    "StreamStat",
    "database_url",
    "default_sqlite_url",
    "open_store",
]


def open_store(url: str | None = None, home: Path | None = None) -> SqlJobStore:
    """The store at ``url``; None means ``FERRYMAN_DATABASE_URL``, else SQLite in ``home``
    (default ``FERRYMAN_HOME``). The schema is migrated to head before it is returned."""
    resolved = database_url(url, home)
    if resolved == default_sqlite_url(home):
        secure_home(home or ferryman_home())  # the store is the home's: keep it all to its owner
    return SqlJobStore.open(resolved)
