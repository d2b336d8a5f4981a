"""Which engine a command or the server uses: ``--engine``, else FERRYMAN_ENGINE, else local.

Temporal's modules are imported only when it is chosen: the local engine never pays for them.
"""

from __future__ import annotations

import os

from ferryman.engines.base import Engine, WorkerEngine
from ferryman.engines.temporal.settings import engine_name
from ferryman.errors import UserInputError
from ferryman.settings import Settings
from ferryman.store.base import JobStore


def command_engine(store: JobStore, settings: Settings, chosen: str | None = None) -> Engine:
    """The engine of a CLI command: local runs the command's jobs in its own process; Temporal
    submits them to its workers and waits."""
    if engine_name(os.environ, chosen) == "temporal":
        from ferryman.engines.temporal.engine import TemporalEngine

        return TemporalEngine(store, settings)
    from ferryman.engines.local import LocalEngine

    return LocalEngine(store, settings, foreground=True)


def worker_engine(
    store: JobStore, settings: Settings, chosen: str | None = None, switch: bool = False
) -> WorkerEngine:
    """The engine of ``ferryman worker`` and ``ferryman server``: refused (UserInputError) on a
    store another kind of engine works, unless ``switch`` records this kind instead."""
    name = engine_name(os.environ, chosen)
    recorded = store.record_engine_kind(name, switch)
    if recorded != name:
        raise UserInputError(
            f"the store {store.url} is worked by the {recorded} engine (recorded when its first "
            f"worker started): start this one with --engine {recorded} (or FERRYMAN_ENGINE={recorded}), "
            f"or, once every {recorded} worker has stopped, move the store with "
            f"`ferryman worker --engine {name} --switch-engine`"
        )
    if name == "temporal":
        from ferryman.engines.temporal.worker import TemporalWorker

        return TemporalWorker(store, settings)
    from ferryman.engines.local import LocalEngine

    return LocalEngine(store, settings)


def is_temporal(chosen: str | None = None) -> bool:
    return engine_name(os.environ, chosen) == "temporal"
