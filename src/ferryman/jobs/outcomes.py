"""How an attempt ended, typed and versioned (one structure out, as a Temporal activity returns).

The store keeps two JSON documents per attempt: ``output`` (what the job produced: a spec, a
check result, a catalog, a sync's counts) and ``failure_summary`` (why it failed). These are
their structures, read and written at the store's edge (see :mod:`ferryman.jobs.configs` for
versions: a document without one is version 1).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ferryman.jobs.configs import Versioned
from ferryman.jobs.failures import FailureReason


class FailureSummary(Versioned, frozen=True, kw_only=True):
    """Why an attempt failed (or was cancelled): its failures, first the one that decides a
    retry, and whether it committed anything before it did (None: not known)."""

    failures: list[FailureReason] = []
    partial_success: bool | None = None

    def to_document(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "failures": [f.to_dict() for f in self.failures],
            "partial_success": self.partial_success,
        }


def failure_summary(document: dict[str, Any] | None) -> FailureSummary:
    """An attempt's stored failure summary (an empty one when it has none)."""
    return FailureSummary() if document is None else FailureSummary.from_document(document)


class CheckResult(msgspec.Struct, frozen=True, kw_only=True):
    status: str  # succeeded | failed
    message: str | None = None


class ConnectorOutcome(Versioned, frozen=True, kw_only=True):
    """The output of a spec, check or discover attempt."""

    exit_code: int | None = None
    spec: dict[str, Any] | None = None
    check: CheckResult | None = None
    catalog: dict[str, Any] | None = None
    config_updated: bool = False


class StreamFigures(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    namespace: str | None = None
    status: str | None = None
    records_emitted: int = 0
    bytes_emitted: int = 0
    records_committed: int | None = None
    bytes_committed: int | None = None
    estimated_records: int | None = None
    estimated_bytes: int | None = None


class WorkerFigures(msgspec.Struct, frozen=True, kw_only=True):
    cpu_s: float = 0.0
    peak_rss_bytes: int = 0


class ReplicationOutcome(Versioned, frozen=True, kw_only=True):
    """The output of a sync or reset attempt: its counts, per stream and in all, and the state
    the destination committed last."""

    status: str  # succeeded | failed | cancelled
    records_emitted: int = 0
    records_committed: int | None = None
    bytes_emitted: int = 0
    bytes_committed: int | None = None
    states_emitted: int = 0
    states_committed: int = 0
    started_at_ms: int = 0
    ended_at_ms: int = 0
    streams: list[StreamFigures] = []
    state: list[dict[str, Any]] = []
    failures: list[FailureReason] = []
    partial_success: bool | None = None
    source_config_updated: bool = False
    destination_config_updated: bool = False
    worker: WorkerFigures = WorkerFigures()

    def to_document(self) -> dict[str, Any]:
        document = super().to_document()
        document["failures"] = [f.to_dict() for f in self.failures]
        return document
