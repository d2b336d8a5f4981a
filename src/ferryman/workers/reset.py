"""Reset: clear a connection's streams in the destination and empty their state.

As Airbyte does it: a replication whose source is an empty source that emits no record, only a
null state for each stream, into a catalog where every stream is full refresh + overwrite.
"""

from __future__ import annotations

from pathlib import Path

from ferryman.connectors import parse_reference, resolve
from ferryman.protocol.catalog import NamespaceMapping, reset_catalog, stream_descriptors
from ferryman.protocol.state import state_type
from ferryman.workers.models import ConnectorInput, SyncInput


def reset_input(
    destination: ConnectorInput,
    catalog: dict[str, object],
    state: list[dict[str, object]] | None = None,
    namespace_mapping: NamespaceMapping | None = None,
) -> SyncInput:
    state = state or []
    empty_source = resolve(parse_reference("builtin:source-empty"), Path("/nonexistent"))
    streams = [{"name": name, "namespace": ns} for name, ns in stream_descriptors(catalog)]
    kind = state_type(state[0]) if state else "STREAM"
    return SyncInput(
        source=ConnectorInput(empty_source, {"streams": streams, "state_type": kind}),
        destination=destination,
        catalog=reset_catalog(catalog),
        state=state,
        namespace_mapping=namespace_mapping or NamespaceMapping(),
    )
