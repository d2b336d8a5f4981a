"""Inputs and outputs of the workers: plain data in, plain data out, nothing persisted here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ferryman.connectors import ResolvedConnector
from ferryman.jobs.failures import FailureReason
from ferryman.protocol.catalog import NamespaceMapping
from ferryman.secrets import SecretRules, secret_values
from ferryman.settings import LifecycleSettings


@dataclass(frozen=True)
class AttemptContext:
    """Where one attempt of one job runs: ``<workspace>/<job>/<attempt>/``."""

    job_id: str
    attempt: int
    workdir: Path
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    # Secret values to mask in the attempt log (from the specs' airbyte_secret fields).
    secrets: list[str] = field(default_factory=list)
    job_type: str = ""  # a JobType value when an engine runs the job; names containers
    # The host directory a local process finds in place of /local (see local_paths); None = as is.
    local_root: Path | None = None
    # What is secret in each side's config ("source", "destination"): a config a connector
    # hands back (CONTROL) may carry new secret values, masked from then on.
    secret_rules: dict[str, SecretRules] = field(default_factory=dict)

    def secrets_of(self, side: str, config: dict[str, Any]) -> list[str]:
        """The values to mask of a config the connector on ``side`` sent (by that side's spec;
        by field names when it is not known)."""
        return secret_values(config, self.secret_rules.get(side) or SecretRules.of(None, config))


@dataclass(frozen=True)
class ConnectorInput:
    connector: ResolvedConnector
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConnectorJobOutput:
    """What spec, check and discover return (Airbyte's ``ConnectorJobOutput``)."""

    spec: dict[str, Any] | None = None
    check_succeeded: bool | None = None
    check_message: str | None = None
    catalog: dict[str, Any] | None = None
    updated_config: dict[str, Any] | None = None
    failures: list[FailureReason] = field(default_factory=list)
    exit_code: int | None = None

    @property
    def failure(self) -> FailureReason | None:
        return self.failures[0] if self.failures else None


class ReplicationStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class SyncInput:
    source: ConnectorInput
    destination: ConnectorInput
    catalog: dict[str, Any]  # the configured catalog, in source names
    state: list[dict[str, Any]] = field(default_factory=list)
    namespace_mapping: NamespaceMapping = field(default_factory=NamespaceMapping)
    # Airbyte's refresh fields, set on every stream of the destination's catalog: the job's id,
    # and the generation of the connection's data (None: the catalog is passed as it is).
    sync_id: int | None = None
    generation_id: int | None = None


@dataclass
class StreamStats:
    name: str
    namespace: str | None
    records_emitted: int = 0
    bytes_emitted: int = 0
    records_committed: int | None = 0
    bytes_committed: int | None = 0
    estimated_records: int | None = None
    estimated_bytes: int | None = None
    status: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SyncProgress:
    elapsed_s: float
    streams: list[StreamStats]
    states_committed: int

    @property
    def records_emitted(self) -> int:
        return sum(s.records_emitted for s in self.streams)


@dataclass(frozen=True)
class StateCommit:
    """One STATE the destination echoed, handed over as it arrives so an engine can persist it."""

    state: dict[str, Any]
    aggregated: list[dict[str, Any]]
    streams: list[StreamStats]


@dataclass
class SyncOutput:
    status: ReplicationStatus
    streams: list[StreamStats]
    state: list[dict[str, Any]]
    failures: list[FailureReason]
    started_at_ms: int
    ended_at_ms: int
    states_emitted: int = 0
    states_committed: int = 0
    source_config_update: dict[str, Any] | None = None
    destination_config_update: dict[str, Any] | None = None
    worker_cpu_s: float = 0.0  # CPU of this sync's worker threads (the connectors not included)
    worker_peak_rss_bytes: int = 0  # peak RSS of the process the worker runs in

    @property
    def records_emitted(self) -> int:
        return sum(s.records_emitted for s in self.streams)

    @property
    def bytes_emitted(self) -> int:
        return sum(s.bytes_emitted for s in self.streams)

    @property
    def records_committed(self) -> int | None:
        counts = [s.records_committed for s in self.streams]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    @property
    def bytes_committed(self) -> int | None:
        counts = [s.bytes_committed for s in self.streams]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    @property
    def partial_success(self) -> bool | None:
        committed = self.records_committed
        return None if committed is None else committed > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "records_emitted": self.records_emitted,
            "records_committed": self.records_committed,
            "bytes_emitted": self.bytes_emitted,
            "bytes_committed": self.bytes_committed,
            "states_emitted": self.states_emitted,
            "states_committed": self.states_committed,
            "started_at_ms": self.started_at_ms,
            "ended_at_ms": self.ended_at_ms,
            "streams": [s.to_dict() for s in self.streams],
            "state": self.state,
            "failures": [f.to_dict() for f in self.failures],
            "partial_success": self.partial_success,
            "source_config_updated": self.source_config_update is not None,
            "destination_config_updated": self.destination_config_update is not None,
            "worker": {
                "cpu_s": round(self.worker_cpu_s, 4),
                "peak_rss_bytes": self.worker_peak_rss_bytes,
            },
        }


ProgressCallback = Callable[[SyncProgress], None]
StateCallback = Callable[[StateCommit], None]
