"""Which engine a command or the server uses: ``--engine``, else FERRYMAN_ENGINE, else local.

Temporal's modules are imported only when it is chosen: the local engine never pays for them.
"""

from __future__ import annotations

import os

from ferryman.engines.base import Engine, WorkerEngine
from ferryman.engines.temporal.settings import engine_name
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


def worker_engine(store: JobStore, settings: Settings, chosen: str | None = None) -> WorkerEngine:
    """The engine of ``ferryman worker`` and ``ferryman server``."""
    if engine_name(os.environ, chosen) == "temporal":
        from ferryman.engines.temporal.worker import TemporalWorker

        return TemporalWorker(store, settings)
    from ferryman.engines.local import LocalEngine

    return LocalEngine(store, settings)


def is_temporal(chosen: str | None = None) -> bool:
    return engine_name(os.environ, chosen) == "temporal"
