"""Which kind of engine works a store: one kind per store, recorded by its first worker.

A local worker claims queued jobs from the store itself; a Temporal worker runs the jobs whose
workflows Temporal hands it (and starts workflows for jobs left pending). Both kinds on one
store would each take the other's jobs: a job claimed by a local worker while its workflow waits
in Temporal, retries decided twice. So the first worker to start records its kind, and a worker
of the other kind is refused until someone switches the store on purpose.
"""

from __future__ import annotations

import sqlalchemy as sa

from ferryman.store import rows
from ferryman.store.db import Database
from ferryman.store.schema import store_settings

ENGINE = "engine"


class EngineOps:
    _db: Database

    def engine_kind(self) -> str | None:
        """The kind of engine recorded as working this store; None before its first worker."""
        with self._db.read() as conn:
            value = conn.execute(
                sa.select(store_settings.c.value).where(store_settings.c.name == ENGINE)
            ).scalar_one_or_none()
        return None if value is None else str(value)

    def record_engine_kind(self, kind: str, switch: bool = False) -> str:
        """Record ``kind`` unless a kind is recorded already (any kind, with ``switch``); returns
        the kind recorded now. Two workers starting at once agree: the first write wins."""
        now = rows.utcnow()
        with self._db.write() as conn:
            if switch:
                moved = conn.execute(
                    store_settings.update()
                    .where(store_settings.c.name == ENGINE)
                    .values(value=kind, updated_at=now)
                )
                if moved.rowcount:
                    return kind
            insert = self._db.insert(store_settings).values(name=ENGINE, value=kind, updated_at=now)
            conn.execute(insert.on_conflict_do_nothing(index_elements=[store_settings.c.name]))
            recorded = conn.execute(
                sa.select(store_settings.c.value).where(store_settings.c.name == ENGINE)
            ).scalar_one()
        return str(recorded)
