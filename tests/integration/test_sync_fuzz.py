"""A property of the whole sync: whatever lines a source writes, the sync ends, and it reports
success only with every RECORD of a configured stream in the destination.

The real ReplicationWorker runs tests/connectors/scripted_source.py (its script drawn by
hypothesis: good records, states, garbage, deep nesting, huge lines, invalid UTF-8, bad RECORDs
and STATEs) into the built-in destination-jsonl. Few examples: each starts two processes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.connectors import ConnectorRef, ResolvedConnector
from ferryman.connectors.references import resolve
from ferryman.jobs.failures import FailureOrigin
from ferryman.workers.models import AttemptContext, ConnectorInput, ReplicationStatus, SyncInput
from ferryman.workers.replication import ReplicationWorker
from tests.conftest import short_lifecycle
from tests.contract.conftest import scripted
from tests.contract.test_replication import configured_catalog

DEEP = 50_000
GOOD_STEPS = [
    st.builds(lambda n: {"records": n, "stream": "users"}, st.integers(1, 50)),
    st.builds(lambda n: {"records": n, "stream": "other"}, st.integers(1, 5)),
    st.builds(lambda n: {"records": 1, "stream": "users", "pad": n}, st.integers(1_000, 2_000_000)),
    st.just({"state": {"name": "users"}}),
    st.builds(lambda text: {"log": text}, st.text(max_size=50)),
    st.builds(lambda n: {"garbage_line": n}, st.integers(0, 3_000_000)),
    st.builds(lambda raw: {"stdout_hex": raw.replace(b"\n", b" ").hex()}, st.binary(max_size=100)),
    st.just({"stdout_hex": (b'{"type":"LOG","log":{"level":"INFO","message":"x"},"x":' + b"[" * DEEP).hex()}),
]
BAD_LINES = [
    b'{"type":"RECORD","record":{"stream":"users","data":{"a":' + b"[" * DEEP + b"]" * DEEP + b"}}}",
    b'{"type":"RECORD","record":{"stream":"users","data":{"id":"\xff"},"emitted_at":1}}',
    b'{"type":"RECORD","record":{"stream":"users","data":[1],"emitted_at":1}}',
    b'{"type":"STATE","state":{"type":"SOMETHING"}}',
    b'{"type":"STATE","state":{"type":"GLOBAL","global":{}}}',  # after STREAM states: mixed
]
steps = st.lists(st.one_of(*GOOD_STEPS), max_size=8)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps, st.none() | st.sampled_from(BAD_LINES), st.integers(0, 8))
def test_a_sync_ends_and_succeeds_only_with_every_record_delivered(
    good: list[dict[str, Any]], bad: bytes | None, at: int
) -> None:
    script = [{"state": {"name": "users"}}, *good]
    if bad is not None:
        script.insert(min(at, len(script)), {"stdout_hex": bad.hex()})
    with tempfile.TemporaryDirectory(prefix="ferryman-fuzz-") as tmp:
        output, sent, delivered = _sync(Path(tmp), script)

    if bad is not None:
        assert output.status is ReplicationStatus.FAILED
        assert any(f.origin is FailureOrigin.SOURCE for f in output.failures), output.failures
    if output.status is ReplicationStatus.COMPLETED:
        assert delivered == sent
        assert output.records_committed == len(sent)


def _sync(tmp: Path, script: list[dict[str, Any]]) -> tuple[Any, list[Any], list[Any]]:
    tee, out = tmp / "sent.jsonl", tmp / "out"
    destination = resolve(ConnectorRef("builtin", "destination-jsonl"), tmp)
    source: ResolvedConnector = scripted("local", "scripted_source")
    sync = SyncInput(
        source=ConnectorInput(source, {"steps": script, "tee": str(tee)}),
        destination=ConnectorInput(destination, {"path": str(out)}),
        catalog=configured_catalog(("users", None)),
        state=[],
    )
    ctx = AttemptContext("fuzz", 0, tmp / "attempt", short_lifecycle())
    output = ReplicationWorker().run(sync, ctx)
    sent = [
        message["record"]["data"]
        for message in map(json.loads, tee.read_bytes().splitlines() if tee.exists() else [])
        if message["type"] == "RECORD" and message["record"]["stream"] == "users"
    ]
    written = out / "users.jsonl"
    delivered = [json.loads(line) for line in written.read_bytes().splitlines()] if written.exists() else []
    return output, sent, delivered
