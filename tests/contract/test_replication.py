"""The sync worker against misbehaving connectors: what a user sees in the output and the log.

Each test runs tests/connectors/scripted_source.py into tests/connectors/scripted_destination.py
(or a misbehaving variant of either) through ``ReplicationWorker.run`` and checks the
SyncOutput, what the destination received, and the attempt log. The autouse leak check of
tests/conftest.py fails any test that leaves a process behind. Nothing here sleeps: whatever
depends on time runs with short lifecycle settings and waits for an event.
"""

from __future__ import annotations

import json
import os
import re
import resource
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ferryman.connectors import ResolvedConnector
from ferryman.jobs.failures import FailureOrigin, FailureReason, FailureType
from ferryman.launchers import Launcher
from ferryman.protocol.catalog import NamespaceDefinition, NamespaceMapping
from ferryman.workers import StateCheckpoints, files
from ferryman.workers.attempt_log import MAX_LINE_CHARS
from ferryman.workers.models import (
    AttemptContext,
    ConnectorInput,
    ReplicationStatus,
    StateCommit,
    StreamStats,
    SyncInput,
    SyncOutput,
    SyncProgress,
)
from ferryman.workers.replication import ReplicationWorker
from tests.conftest import NOT_WAITED_OUT_S

Stream = tuple[str, str | None]
USERS: Stream = ("users", None)


# -- building inputs ------------------------------------------------------------------------


def configured_catalog(*streams: Stream) -> dict[str, Any]:
    configured = []
    for name, namespace in streams:
        stream: dict[str, Any] = {
            "name": name,
            "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "supported_sync_modes": ["full_refresh", "incremental"],
        }
        if namespace is not None:
            stream["namespace"] = namespace
        configured.append(
            {
                "stream": stream,
                "sync_mode": "incremental",
                "cursor_field": ["id"],
                "destination_sync_mode": "append",
            }
        )
    return {"streams": configured}


def stream_state(stream: Stream, cursor: int) -> dict[str, Any]:
    """The STATE the scripted source emits for ``stream`` after ``cursor`` records of it."""
    name, namespace = stream
    descriptor: dict[str, Any] = {"name": name}
    if namespace is not None:
        descriptor["namespace"] = namespace
    return {
        "type": "STREAM",
        "stream": {"stream_descriptor": descriptor, "stream_state": {"cursor": cursor}},
    }


def records(stream: Stream, count: int, **options: Any) -> dict[str, Any]:
    return {"records": count, "stream": stream[0], "namespace": stream[1], **options}


def state(stream: Stream) -> dict[str, Any]:
    return {"state": {"name": stream[0], "namespace": stream[1]}}


def batches(stream: Stream, total: int, every: int) -> list[dict[str, Any]]:
    """``total`` records of a stream with a STATE after every ``every`` and at the end."""
    steps: list[dict[str, Any]] = []
    done = 0
    while done < total:
        size = min(every, total - done)
        steps += [records(stream, size), state(stream)]
        done += size
    return steps


def forever(stream: Stream = USERS, state_every: int = 10, pause: float = 0.002) -> dict:
    return {
        "forever": {
            "stream": stream[0],
            "namespace": stream[1],
            "state_every": state_every,
            "pause": pause,
        }
    }


# -- running a sync -------------------------------------------------------------------------


@dataclass
class Run:
    output: SyncOutput
    elapsed: float
    workdir: Path
    received_path: Path
    sent_path: Path
    commits: list[StateCommit] = field(default_factory=list)
    progress: list[SyncProgress] = field(default_factory=list)

    @property
    def received(self) -> list[dict[str, Any]]:
        """Every message the destination read from its input, in order."""
        if not self.received_path.exists():
            return []
        return [json.loads(line) for line in self.received_path.read_bytes().splitlines()]

    def received_records(self, stream: str | None = None) -> list[dict[str, Any]]:
        found = [m["record"] for m in self.received if m["type"] == "RECORD"]
        return [r for r in found if stream is None or r["stream"] == stream]

    @property
    def failure(self) -> FailureReason:
        assert self.output.failures, "the sync reported no failure"
        return self.output.failures[0]

    def stats(self, stream: Stream) -> StreamStats:
        matches = [s for s in self.output.streams if (s.name, s.namespace) == stream]
        assert len(matches) == 1, (stream, self.output.streams)
        return matches[0]

    @property
    def log(self) -> str:
        return (self.workdir / files.LOG_FILE).read_text(encoding="utf-8")

    def log_messages(self, side: str) -> list[str]:
        """The messages logged for one side: lines are ``DATE TIME SIDE LEVEL MESSAGE``."""
        found = []
        for line in self.log.splitlines():
            parts = line.split(" ", 4)
            if len(parts) == 5 and parts[2] == side:
                found.append(parts[4])
        return found


class Syncs:
    """Runs the scripted source into the scripted destination, recording what happens."""

    def __init__(
        self,
        launcher: Launcher,
        source: ResolvedConnector,
        destination: ResolvedConnector,
        context: Callable[..., AttemptContext],
        tmp_path: Path,
    ) -> None:
        self.launcher = launcher
        self.source = source
        self.destination = destination
        self.context = context
        self.tmp_path = tmp_path

    def run(
        self,
        steps: list[dict[str, Any]],
        *,
        streams: tuple[Stream, ...] = (USERS,),
        destination: dict[str, Any] | None = None,
        state: list[dict[str, Any]] | None = None,
        mapping: NamespaceMapping | None = None,
        lifecycle: dict[str, float] | None = None,
        cancel: threading.Event | None = None,
        on_progress: Callable[[SyncProgress], None] | None = None,
        on_state: Callable[[StateCommit], None] | None = None,
        checkpoints: StateCheckpoints | None = None,
    ) -> Run:
        """``checkpoints``: save confirmed states through these (coalesced), instead of
        recording each one in ``Run.commits``."""
        received, sent = self.tmp_path / "received.jsonl", self.tmp_path / "sent.jsonl"
        ctx = self.context(**(lifecycle or {}))
        sync = SyncInput(
            source=ConnectorInput(self.source, {"steps": steps, "tee": str(sent)}),
            destination=ConnectorInput(self.destination, {"output": str(received), **(destination or {})}),
            catalog=configured_catalog(*streams),
            state=state or [],
            namespace_mapping=mapping or NamespaceMapping(),
        )
        commits: list[StateCommit] = []
        progress: list[SyncProgress] = []

        def record_state(commit: StateCommit) -> None:
            commits.append(commit)
            if on_state is not None:
                on_state(commit)

        def record_progress(update: SyncProgress) -> None:
            progress.append(update)
            if on_progress is not None:
                on_progress(update)

        worker = ReplicationWorker(launcher=self.launcher, progress_interval_s=0.05)
        started = time.monotonic()
        sink = checkpoints if checkpoints is not None else record_state
        output = worker.run(sync, ctx, cancel=cancel, on_progress=record_progress, on_state=sink)
        elapsed = time.monotonic() - started
        return Run(output, elapsed, ctx.workdir, received, sent, commits, progress)


@pytest.fixture
def syncs(
    launcher: Launcher,
    source: ResolvedConnector,
    destination: ResolvedConnector,
    context: Callable[..., AttemptContext],
    tmp_path: Path,
) -> Syncs:
    return Syncs(launcher, source, destination, context, tmp_path)


def failures_of(run: Run, origin: FailureOrigin) -> list[FailureReason]:
    return [f for f in run.output.failures if f.origin is origin]


# -- the happy path -------------------------------------------------------------------------

SHOP_USERS: Stream = ("users", "shop")
ORDERS: Stream = ("orders", None)


def test_records_and_states_reach_the_destination_and_are_counted(syncs: Syncs) -> None:
    steps = batches(SHOP_USERS, 25, 5) + batches(ORDERS, 12, 5)
    run = syncs.run(steps, streams=(SHOP_USERS, ORDERS))
    out = run.output

    assert out.status is ReplicationStatus.COMPLETED, out.failures
    assert out.failures == []
    assert len(run.received_records("users")) == 25
    assert len(run.received_records("orders")) == 12
    assert out.records_emitted == out.records_committed == 37
    users, orders = run.stats(SHOP_USERS), run.stats(ORDERS)
    assert (users.records_emitted, users.records_committed) == (25, 25)
    assert (orders.records_emitted, orders.records_committed) == (12, 12)
    assert users.bytes_emitted > 0 and users.bytes_committed == users.bytes_emitted

    emitted_states = [stream_state(SHOP_USERS, n) for n in (5, 10, 15, 20, 25)] + [
        stream_state(ORDERS, n) for n in (5, 10, 12)
    ]
    assert [c.state for c in run.commits] == emitted_states
    assert out.states_emitted == out.states_committed == 8
    assert out.state == [stream_state(SHOP_USERS, 25), stream_state(ORDERS, 12)]


def test_states_are_committed_while_the_source_is_still_running(syncs: Syncs, tmp_path: Path) -> None:
    """The source blocks after its first STATE until the on_state callback has seen it."""
    marker = tmp_path / "first-state-committed"
    steps = [
        records(USERS, 5),
        state(USERS),
        {"wait_for_file": str(marker), "timeout": 10},
        records(USERS, 5),
        state(USERS),
    ]

    def persist(commit: StateCommit) -> None:
        marker.touch()

    run = syncs.run(steps, on_state=persist)

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    first, second = run.commits
    assert first.state == stream_state(USERS, 5)
    assert first.aggregated == [stream_state(USERS, 5)]
    assert [(s.records_emitted, s.records_committed) for s in first.streams] == [(5, 5)]
    assert second.state == stream_state(USERS, 10)
    assert run.output.records_committed == 10


def test_only_records_and_states_reach_the_destination_byte_for_byte(syncs: Syncs) -> None:
    steps = [
        {"log": "starting the read"},
        records(USERS, 3),
        {"estimate": {"name": "users", "row_estimate": 6}},
        {"stdout_hex": "fffe6e6f74207574662d38"},
        {"control_config": {"token": "rotated"}},
        {"garbage_line": 100},
        state(USERS),
        {"trace_error": {"failure_type": "transient_error", "message": "blip"}},
        records(USERS, 3),
        {"log": "a warning", "level": "WARN"},
        state(USERS),
    ]
    run = syncs.run(steps)

    sent = run.sent_path.read_bytes()
    assert sent.count(b"\n") == 8
    assert run.received_path.read_bytes() == sent
    assert {m["type"] for m in run.received} == {"RECORD", "STATE"}


def _trailing_statuses(run: Run) -> list[tuple[str, str | None, str]]:
    """The platform's STREAM_STATUS messages, which may only follow the source's last line."""
    received = run.received
    kinds = [m["type"] for m in received]
    first = kinds.index("TRACE") if "TRACE" in kinds else len(kinds)
    assert set(kinds[:first]) <= {"RECORD", "STATE"} and set(kinds[first:]) <= {"TRACE"}, kinds
    statuses = []
    for message in received[first:]:
        status = message["trace"]["stream_status"]
        descriptor = status["stream_descriptor"]
        statuses.append((descriptor["name"], descriptor.get("namespace"), status["status"]))
    return statuses


def test_streams_are_marked_complete_for_the_destination_after_the_source_succeeds(syncs: Syncs) -> None:
    events = ("events", "app")
    run = syncs.run(
        [records(USERS, 2), state(USERS), records(events, 1)],
        streams=(USERS, events),
        mapping=NamespaceMapping(prefix="p_"),
    )

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    # In destination names, after every record and state, so an overwrite can swap safely.
    assert _trailing_statuses(run) == [("p_users", None, "COMPLETE"), ("p_events", "app", "COMPLETE")]


def test_a_failed_source_never_marks_streams_complete(syncs: Syncs) -> None:
    run = syncs.run([records(USERS, 3), state(USERS), records(USERS, 2), {"exit": 1}])

    assert run.output.status is ReplicationStatus.FAILED
    assert _trailing_statuses(run) == []
    assert len(run.received_records()) == 5


# -- the catalog: namespaces and stream selection --------------------------------------------

EVENTS: Stream = ("events", None)


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (
            NamespaceMapping(NamespaceDefinition.CUSTOM_FORMAT, "ns_${SOURCE_NAMESPACE}", "p_"),
            {SHOP_USERS: ("p_users", "ns_shop"), EVENTS: ("p_events", "ns_")},
        ),
        (
            NamespaceMapping(NamespaceDefinition.DESTINATION),
            {SHOP_USERS: ("users", None), EVENTS: ("events", None)},
        ),
        (
            NamespaceMapping(NamespaceDefinition.SOURCE, prefix="p_"),
            {SHOP_USERS: ("p_users", "shop"), EVENTS: ("p_events", None)},
        ),
        (
            NamespaceMapping(NamespaceDefinition.SOURCE),
            {SHOP_USERS: ("users", "shop"), EVENTS: ("events", None)},
        ),
    ],
    ids=["custom-format", "destination", "source-with-prefix", "source"],
)
def test_namespace_mapping_renames_what_the_destination_sees(
    syncs: Syncs, mapping: NamespaceMapping, expected: dict[Stream, Stream]
) -> None:
    steps = batches(SHOP_USERS, 4, 2) + batches(EVENTS, 3, 3)
    run = syncs.run(steps, streams=(SHOP_USERS, EVENTS), mapping=mapping)

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    catalog = json.loads((run.workdir / files.DESTINATION_CATALOG).read_text())
    seen = [(c["stream"]["name"], c["stream"].get("namespace")) for c in catalog["streams"]]
    assert seen == [expected[SHOP_USERS], expected[EVENTS]]
    got = [(r["stream"], r.get("namespace")) for r in run.received_records()]
    assert got == [expected[SHOP_USERS]] * 4 + [expected[EVENTS]] * 3
    # The source's own catalog, the stats and the state stay in source names.
    source_catalog = json.loads((run.workdir / files.SOURCE_CATALOG).read_text())
    assert source_catalog == configured_catalog(SHOP_USERS, EVENTS)
    assert [(s.name, s.namespace, s.records_committed) for s in run.output.streams] == [
        ("users", "shop", 4),
        ("events", None, 3),
    ]
    assert run.output.state == [stream_state(SHOP_USERS, 4), stream_state(EVENTS, 3)]


def test_stream_states_are_mapped_for_the_destination_and_back(syncs: Syncs) -> None:
    """Airbyte's NamespacingMapper renames STREAM state descriptors on the way to the
    destination (which only knows the mapped names) and reverts the echoed ones."""
    mapping = NamespaceMapping(NamespaceDefinition.CUSTOM_FORMAT, "ns_${SOURCE_NAMESPACE}", "p_")
    run = syncs.run(batches(SHOP_USERS, 4, 2), streams=(SHOP_USERS,), mapping=mapping)

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    states = [m["state"] for m in run.received if m["type"] == "STATE"]
    assert [s["stream"]["stream_descriptor"] for s in states] == [
        {"name": "p_users", "namespace": "ns_shop"}
    ] * 2
    assert run.output.state == [stream_state(SHOP_USERS, 4)]
    assert run.output.records_committed == 4


def test_records_of_streams_outside_the_catalog_are_not_forwarded(syncs: Syncs) -> None:
    ghost: Stream = ("ghost", None)
    steps = [
        records(USERS, 2),
        records(ghost, 3),
        records(USERS, 2),
        state(USERS),
    ]
    run = syncs.run(steps, streams=(USERS,))

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert [r["stream"] for r in run.received_records()] == ["users"] * 4
    assert [(s.name, s.records_emitted) for s in run.output.streams] == [("users", 4)]
    assert any("ghost" in line for line in run.log_messages("worker"))


# -- what connectors report ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure_type", "retryable"),
    [(FailureType.CONFIG_ERROR, False), (FailureType.SYSTEM_ERROR, True)],
)
def test_a_trace_error_is_the_first_failure(syncs: Syncs, failure_type: FailureType, retryable: bool) -> None:
    error = {
        "failure_type": failure_type.value,
        "message": "the API key was refused",
        "internal_message": "401 Unauthorized",
        "stack_trace": "Traceback (most recent call last):\n  ...\nHTTPError: 401",
    }
    steps = [records(USERS, 3), state(USERS), {"trace_error": error}, {"exit": 1}]
    run = syncs.run(steps)

    assert run.output.status is ReplicationStatus.FAILED
    first = run.failure
    assert first.origin is FailureOrigin.SOURCE
    assert first.type is failure_type
    assert first.message == "the API key was refused"
    assert first.internal_message == "401 Unauthorized"
    assert first.stack_trace == error["stack_trace"]
    assert first.retryable is retryable
    assert first.from_trace_message
    # The exit code is reported too, after the connector's own explanation.
    assert any("code 1" in f.message for f in run.output.failures[1:])
    assert run.output.state == [stream_state(USERS, 3)]


def test_estimates_and_config_updates_are_surfaced(syncs: Syncs) -> None:
    steps = [
        {"estimate": {"name": "users", "row_estimate": 40, "byte_estimate": 4000}},
        records(USERS, 4),
        {"control_config": {"api_key": "new-key"}},
        state(USERS),
    ]
    run = syncs.run(steps, destination={"control_config": {"password": "rotated"}})

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    users = run.stats(USERS)
    assert (users.estimated_records, users.estimated_bytes) == (40, 4000)
    assert run.output.source_config_update == {"api_key": "new-key"}
    assert run.output.destination_config_update == {"password": "rotated"}


def test_the_log_says_where_each_connector_runs(syncs: Syncs, launcher_kind: str) -> None:
    run = syncs.run(batches(USERS, 1, 1))

    where = [line for line in run.log_messages("worker") if " runs as " in line]
    assert [line.split(" runs as ")[0] for line in where] == ["the destination", "the source"]
    expected = "pid " if launcher_kind == "local" else "container scripted-"
    assert all(line.split(" runs as ")[1].startswith(expected) for line in where), where


def test_connector_output_lands_in_the_attempt_log(syncs: Syncs) -> None:
    steps = [
        {"stderr": "source says on stderr", "repeat": 3},
        {"log": "source LOG message"},
        {"stdout_hex": b"bytes \xff\xfe not utf-8".hex()},
        {"stdout_hex": b"plain text on stdout".hex()},
        records(USERS, 2),
        state(USERS),
    ]
    run = syncs.run(steps, destination={"stderr_lines": 2, "log": "destination LOG message"})

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    source, destination = run.log_messages("source"), run.log_messages("destination")
    for expected in (
        "source says on stderr 0",
        "source says on stderr 2",
        "source LOG message",
        "bytes \ufffd\ufffd not utf-8",
        "plain text on stdout",
    ):
        assert any(expected in line for line in source), expected
    for expected in (
        "destination stderr line 0",
        "destination stderr line 1",
        "destination LOG message",
    ):
        assert any(expected in line for line in destination), expected


def test_a_record_line_that_is_not_json_is_logged_not_counted_as_synced(syncs: Syncs) -> None:
    """It once took the shortcut: counted as emitted and committed, then dropped by the
    destination, which cannot read it. Now it is a line that is not a message, as in Airbyte."""
    broken = b'{"type":"RECORD","record":{"stream":"users","data":{"id":99,},"emitted_at":1}}'
    run = syncs.run([records(USERS, 3), {"stdout_hex": broken.hex()}, records(USERS, 2), state(USERS)])

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert len(run.received_records()) == 5
    assert run.output.records_emitted == run.output.records_committed == 5
    assert any('"id":99,' in line for line in run.log_messages("source"))


def test_nul_characters_from_a_connector_never_reach_the_log_file(syncs: Syncs) -> None:
    """A NUL makes `grep` take logs.log for a binary file (and some viewers cut the line there)."""
    steps = [
        {"log": "LOG with a \u0000 NUL"},
        {"stdout_hex": b"stdout with a \x00 NUL".hex()},
        {"stderr": "stderr with a \u0000 NUL"},
        records(USERS, 1),
        state(USERS),
    ]
    run = syncs.run(steps)

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert b"\x00" not in (run.workdir / files.LOG_FILE).read_bytes()
    for kind in ("LOG", "stdout", "stderr"):
        assert any(f"{kind} with a \ufffd NUL" in line for line in run.log_messages("source")), kind


def test_a_50mb_line_on_stdout_neither_breaks_the_sync_nor_the_log(syncs: Syncs) -> None:
    steps = [
        records(USERS, 5),
        {"garbage_line": 50 * 1024 * 1024},
        records(USERS, 5),
        state(USERS),
    ]
    run = syncs.run(steps)

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert [r["data"]["id"] for r in run.received_records()] == list(range(1, 11))
    garbage = [line for line in run.log_messages("source") if "not json at all" in line]
    assert len(garbage) == 1
    assert len(garbage[0]) < 100_000
    assert (run.workdir / files.LOG_FILE).stat().st_size < 1024 * 1024


def test_a_truncated_log_line_says_how_much_was_left_out(syncs: Syncs) -> None:
    size = 200_000
    run = syncs.run([{"garbage_line": size}, records(USERS, 1), state(USERS)])

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    (garbage,) = [line for line in run.log_messages("source") if "not json at all" in line]
    notice = re.search(r"\.\.\. \((\d+) more (?:characters|bytes) not logged\)$", garbage)
    assert notice, garbage[-100:]
    # The line is ASCII: characters and bytes count the same.
    assert notice.start() + int(notice.group(1)) == size


def test_a_flood_of_stderr_does_not_block_the_sync(syncs: Syncs) -> None:
    steps = [
        records(USERS, 3),
        {"stderr": "noise", "repeat": 200_000},
        records(USERS, 3),
        state(USERS),
    ]
    run = syncs.run(steps)

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert len(run.received_records()) == 6
    source = run.log_messages("source")
    assert sum(1 for line in source if line.startswith("noise ")) == 200_000
    assert "noise 199999" in source


def test_a_stderr_line_that_never_ends_costs_one_logged_line_of_memory(syncs: Syncs) -> None:
    """A progress bar redrawn with \\r and never a newline: before, the whole line was read into
    memory before it was cut to 64 KiB for the log (a 400 MB line, 400 MB and more)."""
    size = 400 << 20
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    run = syncs.run([records(USERS, 1), {"stderr_line": size}, records(USERS, 1), state(USERS)])
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) // 1024

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert len(run.received_records()) == 2
    (logged,) = [line for line in run.log_messages("source") if line.startswith("progress 42%")]
    notice = re.search(r"\.\.\. \((\d+) more bytes not logged\)$", logged)
    assert notice, logged[-100:]
    assert MAX_LINE_CHARS + int(notice.group(1)) == size
    assert grown_mib < 100, f"the worker's peak memory grew by {grown_mib} MiB"


# -- connectors that fail --------------------------------------------------------------------


def test_a_source_crash_after_a_state_keeps_what_was_committed(syncs: Syncs) -> None:
    steps = [
        records(USERS, 10),
        state(USERS),
        records(USERS, 7),
        {"stderr": "boom: connection reset by peer"},
        {"exit": 1},
    ]
    run = syncs.run(steps)
    out = run.output

    assert out.status is ReplicationStatus.FAILED
    assert run.failure.origin is FailureOrigin.SOURCE
    assert "code 1" in run.failure.message
    assert "boom: connection reset by peer" in run.failure.message
    assert failures_of(run, FailureOrigin.DESTINATION) == []
    # The destination saw the end of its input, wrote everything and committed the state.
    assert len(run.received_records()) == 17
    assert out.state == [stream_state(USERS, 10)]
    assert out.records_emitted == 17
    assert out.records_committed == 10


def _assert_source_stopped_at_once(run: Run) -> None:
    """SIGTERM for the destination's sake, not the exit grace a finished source would get."""
    worker_log = "\n".join(run.log_messages("worker"))
    assert "stopping the source (the destination exited): SIGTERM" in worker_log
    assert "did not exit within" not in worker_log
    assert run.elapsed < NOT_WAITED_OUT_S


def test_a_failing_destination_stops_the_source_at_once(syncs: Syncs) -> None:
    run = syncs.run(
        [forever()],
        destination={"fail_after_records": 25},
    )

    assert run.output.status is ReplicationStatus.FAILED
    assert run.failure.origin is FailureOrigin.DESTINATION
    assert run.failure.message == "the warehouse refused record 25"
    _assert_source_stopped_at_once(run)


def test_a_failing_destination_is_reported_with_its_trace(syncs: Syncs) -> None:
    steps = batches(USERS, 60, 10)
    run = syncs.run(steps, destination={"fail_after_records": 25})
    out = run.output

    assert out.status is ReplicationStatus.FAILED
    first = run.failure
    assert (first.origin, first.type) == (FailureOrigin.DESTINATION, FailureType.SYSTEM_ERROR)
    assert first.message == "the warehouse refused record 25"
    assert first.internal_message == "simulated write failure"
    assert first.stack_trace and "RuntimeError" in first.stack_trace
    assert any("code 1" in f.message for f in failures_of(run, FailureOrigin.DESTINATION)[1:])
    assert out.state == [stream_state(USERS, 20)]
    assert out.records_committed == 20


def test_a_destination_that_never_echoes_state_commits_nothing(syncs: Syncs) -> None:
    input_state = [stream_state(USERS, 100)]
    run = syncs.run(batches(USERS, 10, 5), destination={"echo_states": False}, state=input_state)
    out = run.output

    assert len(run.received_records()) == 10
    assert out.state == input_state
    assert out.states_committed == 0
    assert run.commits == []
    assert out.records_committed == 0


def test_a_destination_that_never_echoes_state_keeps_the_input_state(syncs: Syncs) -> None:
    input_state = [stream_state(USERS, 100)]
    run = syncs.run(batches(USERS, 10, 5), destination={"echo_states": False}, state=input_state)

    assert run.output.status in (ReplicationStatus.COMPLETED, ReplicationStatus.FAILED)
    assert run.output.state == input_state
    assert run.commits == []
    input_file = json.loads((run.workdir / files.INPUT_STATE).read_text())
    assert input_file == input_state


def test_a_destination_that_exits_without_reading_fails_the_sync(syncs: Syncs) -> None:
    run = syncs.run(
        [forever()],
        destination={"exit_at_start": 0},
        lifecycle={"exit_grace_s": 2.0, "term_grace_s": 2.0, "cancel_grace_s": 2.0},
    )

    assert run.output.status is ReplicationStatus.FAILED
    assert run.failure.origin is FailureOrigin.DESTINATION
    assert run.output.records_committed == 0


def test_a_destination_that_exits_without_reading_stops_the_source_at_once(
    syncs: Syncs,
) -> None:
    run = syncs.run(
        [forever()],
        destination={"exit_at_start": 0},
    )

    assert run.output.status is ReplicationStatus.FAILED
    _assert_source_stopped_at_once(run)


def test_a_destination_that_quits_mid_sync_with_code_0_fails_the_sync(syncs: Syncs) -> None:
    # Every write to the destination succeeds: it exits 0 only once the source's first
    # bytes wait in its input pipe, and the source then goes quiet without ending.
    steps = [records(USERS, 5), state(USERS), {"hang": True}]
    run = syncs.run(steps, destination={"exit_on_input": True})

    assert run.output.status is ReplicationStatus.FAILED
    assert run.failure.origin is FailureOrigin.DESTINATION
    assert run.output.records_committed == 0


# -- timeouts ---------------------------------------------------------------------------------


# Long enough for two containers to start on a loaded host before the source's first record (the
# heartbeat counts from the start of the sync), short enough to keep the tests quick.
HEARTBEAT_S = 3.0


def test_a_silent_source_hits_the_heartbeat_timeout(syncs: Syncs) -> None:
    steps = [records(USERS, 5), state(USERS), {"hang": True}]
    run = syncs.run(steps, lifecycle={"source_heartbeat_timeout_s": HEARTBEAT_S})
    out = run.output

    assert out.status is ReplicationStatus.FAILED
    first = run.failure
    assert (first.origin, first.type) == (FailureOrigin.SOURCE, FailureType.HEARTBEAT_TIMEOUT)
    assert first.retryable
    assert len(out.failures) == 1, out.failures
    # The destination got the end of its input and committed what it had.
    assert out.state == [stream_state(USERS, 5)]
    assert out.records_committed == 5
    assert run.elapsed < NOT_WAITED_OUT_S


def test_a_destination_that_stops_reading_hits_the_destination_timeout(syncs: Syncs) -> None:
    # 6 MB of records: more than the 1 MiB pipe plus the 1 MiB buffer in front of it.
    steps = [records(USERS, 3000, pad=2000), state(USERS)]
    run = syncs.run(steps, destination={"stop_reading": True}, lifecycle={"destination_timeout_s": 1.0})
    out = run.output

    assert out.status is ReplicationStatus.FAILED
    first = run.failure
    assert (first.origin, first.type) == (
        FailureOrigin.DESTINATION,
        FailureType.DESTINATION_TIMEOUT,
    )
    assert out.records_committed == 0
    # SIGTERM was enough for the source, though output it had sent could no longer be delivered.
    assert "SIGKILL" not in "\n".join(run.log_messages("worker"))
    assert run.elapsed < NOT_WAITED_OUT_S


# -- processes that will not go --------------------------------------------------------------


def test_a_source_that_ignores_sigterm_is_killed(syncs: Syncs, launcher_kind: str) -> None:
    # A local source ends its output and lives on. In a container stdout ends only with the
    # container (Docker sends stdout and stderr down one attach stream), so there the source
    # falls silent instead, and the heartbeat timeout is what stops it.
    steps = [
        records(USERS, 5),
        state(USERS),
        {"close_stdout": True} if launcher_kind == "local" else {"log": "going quiet"},
        {"ignore_sigterm": True},
        {"hang": True},
    ]
    lifecycle = {
        "exit_grace_s": 0.5,
        "term_grace_s": 0.5,
        "cancel_grace_s": 0.5,
        "source_heartbeat_timeout_s": HEARTBEAT_S,
    }
    run = syncs.run(steps, lifecycle=lifecycle)
    out = run.output

    assert out.status is ReplicationStatus.FAILED
    assert run.failure.origin is FailureOrigin.SOURCE
    if launcher_kind == "local":
        assert "SIGKILL" in run.failure.message
    else:
        assert run.failure.type is FailureType.HEARTBEAT_TIMEOUT
    assert any("SIGKILL" in line for line in run.log_messages("worker"))
    assert out.state == [stream_state(USERS, 5)]
    assert out.records_committed == 5
    assert run.elapsed < NOT_WAITED_OUT_S


def test_a_grandchild_holding_stdout_does_not_hold_up_the_sync(syncs: Syncs) -> None:
    steps = [records(USERS, 5), state(USERS), {"spawn_sleeper": 300}]
    run = syncs.run(steps)

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert run.output.records_committed == 5
    # Well within the exit grace: the sleeper was killed when the source exited.
    assert run.elapsed < NOT_WAITED_OUT_S


def test_a_grandchild_in_its_own_session_holding_stdout_does_not_hold_up_the_sync(
    syncs: Syncs, tmp_path: Path, launcher_kind: str
) -> None:
    # The group kill does not reach another session: the end of the source's output is decided
    # by the launcher's pipe reader. Bound: the pytest timeout (the daemon sleeps 300 s).
    pidfile = tmp_path / "daemon.pid"
    steps = [records(USERS, 5), state(USERS), {"spawn_daemon": 300, "pidfile": str(pidfile)}]
    steps += [records(USERS, 5), state(USERS)]
    run = syncs.run(steps)

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert run.output.records_committed == 10
    assert len(run.received_records()) == 10
    if launcher_kind == "local":  # in a container, --init ends it and nothing holds the pipe
        held = [m for m in run.log_messages("worker") if "in a session of its own" in m]
        assert held and "still held its std" in held[0], run.log
        assert f"killed {pidfile.read_text()}" in held[0]


# -- cancellation -----------------------------------------------------------------------------


def test_cancel_from_the_progress_callback(syncs: Syncs) -> None:
    cancel = threading.Event()

    def on_progress(progress: SyncProgress) -> None:
        if progress.records_emitted > 0 and progress.states_committed > 0:
            cancel.set()

    run = syncs.run([forever()], cancel=cancel, on_progress=on_progress)
    out = run.output

    assert out.status is ReplicationStatus.CANCELLED
    first = run.failure
    assert (first.type, first.retryable) == (FailureType.MANUAL_CANCELLATION, False)
    assert run.commits, "the cancel came after a commit"
    assert out.state == run.commits[-1].aggregated
    assert out.records_committed == run.commits[-1].streams[0].records_committed
    assert run.elapsed < NOT_WAITED_OUT_S


def test_cancel_kills_connectors_that_ignore_sigterm(syncs: Syncs) -> None:
    cancel = threading.Event()

    def on_state(commit: StateCommit) -> None:
        cancel.set()

    run = syncs.run(
        [{"ignore_sigterm": True}, forever()],
        destination={"ignore_sigterm": True},
        cancel=cancel,
        on_state=on_state,
        lifecycle={"cancel_grace_s": 0.5},
    )

    assert run.output.status is ReplicationStatus.CANCELLED
    assert run.failure.type is FailureType.MANUAL_CANCELLATION
    assert run.output.state == run.commits[-1].aggregated
    worker_log = "\n".join(run.log_messages("worker"))
    assert "the source ignored SIGTERM: SIGKILL" in worker_log
    assert "the destination ignored SIGTERM: SIGKILL" in worker_log
    assert run.elapsed < NOT_WAITED_OUT_S


# -- files -------------------------------------------------------------------------------------


def test_connector_files_are_private(syncs: Syncs) -> None:
    run = syncs.run(batches(USERS, 2, 2), state=[stream_state(USERS, 1)])

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    for name in (
        files.SOURCE_CONFIG,
        files.SOURCE_CATALOG,
        files.INPUT_STATE,
        files.DESTINATION_CONFIG,
        files.DESTINATION_CATALOG,
    ):
        mode = stat.S_IMODE(os.stat(run.workdir / name).st_mode)
        assert mode == 0o600, f"{name}: {oct(mode)}"


def test_a_source_that_moved_from_legacy_to_stream_state_commits(syncs: Syncs) -> None:
    """The stored state is LEGACY (an older version of the source); the source now sends STREAM
    states. Airbyte migrates such a state; before, every attempt failed, blamed on the destination."""
    legacy = [{"type": "LEGACY", "data": {"users": {"id": 100}}}]
    run = syncs.run(batches(USERS, 10, 5), state=legacy)
    out = run.output

    assert out.status is ReplicationStatus.COMPLETED, out.failures
    assert out.state == [stream_state(USERS, 10)]
    assert out.records_committed == 10
