"""One attempt of one job: inputs in, output out, a cancel signal and progress callbacks.

A worker never touches the database and never knows which engine runs it.
"""

from ferryman.workers.checkpoints import StateCheckpoints
from ferryman.workers.connector_job import ConnectorJobWorker
from ferryman.workers.models import (
    AttemptContext,
    ConnectorInput,
    ConnectorJobOutput,
    ReplicationStatus,
    StateCommit,
    StreamStats,
    SyncInput,
    SyncOutput,
    SyncProgress,
)
from ferryman.workers.replication import ReplicationWorker
from ferryman.workers.reset import reset_input

__all__ = [
    "AttemptContext",
    "ConnectorInput",
    "ConnectorJobOutput",
    "ConnectorJobWorker",
    "ReplicationStatus",
    "ReplicationWorker",
    "StateCheckpoints",
    "StateCommit",
    "StreamStats",
    "SyncInput",
    "SyncOutput",
    "SyncProgress",
    "reset_input",
]
