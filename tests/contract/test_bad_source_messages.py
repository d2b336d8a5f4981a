"""Hostile source output: what the sync does with lines it cannot use.

A RECORD or STATE the source should never have sent fails the attempt as the source's fault,
before anything of it reaches the destination, and the destination is never told the streams are
complete (so an overwrite keeps the old table). Other lines it cannot read (LOG messages,
garbage), however deep or large, are logged cut short and skipped. Whatever happens on the
record path, the sync ends and never reports success with a record missing.
"""

from __future__ import annotations

from typing import Any

import pytest

from ferryman.jobs.failures import FailureOrigin, FailureType
from ferryman.workers import record_path
from ferryman.workers.models import ReplicationStatus
from tests.contract.test_replication import (
    USERS,
    Run,
    Syncs,
    _trailing_statuses,
    forever,
    records,
    state,
    stream_state,
    syncs,
)

__all__ = ["syncs"]  # the fixture, shared with test_replication

DEPTH = 100_000


def raw(line: bytes) -> dict[str, Any]:
    """A step that writes ``line`` (plus a newline) to the source's stdout."""
    return {"stdout_hex": line.hex()}


def deep(head: bytes, tail: bytes = b"}") -> bytes:
    return head + b"[" * DEPTH + b"]" * DEPTH + tail


def record_line(data: bytes, stream: str = "users") -> bytes:
    return b'{"type":"RECORD","record":{"stream":"%s","data":%s,"emitted_at":1}}' % (stream.encode(), data)


def assert_source_failure(run: Run, *words: str) -> None:
    out = run.output
    assert out.status is ReplicationStatus.FAILED
    failure = run.failure
    assert (failure.origin, failure.type) == (FailureOrigin.SOURCE, FailureType.SYSTEM_ERROR), out.failures
    for word in words:
        assert word in failure.message, failure.message
    assert not [f for f in out.failures if f.origin is FailureOrigin.DESTINATION], out.failures
    assert _trailing_statuses(run) == []  # no COMPLETE: an overwrite would keep the old table


@pytest.mark.parametrize(
    "line",
    [
        deep(b'{"type":"LOG","log":{"level":"INFO","message":"x"},"x":'),
        deep(b'{"type":"LOG","log":{"level":"INFO","message":', b"}}"),
        deep(b"", b""),
    ],
    ids=["log-with-deep-field", "deep-log-message", "deep-garbage"],
)
def test_a_deeply_nested_log_or_garbage_line_is_logged_and_skipped(syncs: Syncs, line: bytes) -> None:
    run = syncs.run([records(USERS, 3), raw(line), records(USERS, 4), state(USERS)])

    assert run.output.status is ReplicationStatus.COMPLETED, run.output.failures
    assert len(run.received_records()) == 7
    assert run.output.records_committed == 7
    assert any("more bytes not logged" in m for m in run.log_messages("source"))


BAD_MESSAGES = {
    "deep-record": (deep(b'{"type":"RECORD","record":{"stream":"users","data":{"a":', b"}}}"), "deeply"),
    "deep-record-spaced": (
        deep(b'{"type": "RECORD", "record": {"data": {"a": ', b'}, "stream": "users"}}'),
        "deeply",
    ),
    "invalid-utf8": (record_line(b'{"id":"\xff\xfe"}'), "UTF-8"),
    "invalid-utf8-spaced": (
        b'{"type": "RECORD", "record": {"stream": "users", "data": {"id": "\xc3"}}}',
        "UTF-8",
    ),
    "data-not-an-object": (record_line(b"[1,2]"), "not a JSON object"),
    "data-null": (record_line(b"null"), "not a JSON object"),
    "data-missing": (b'{"type":"RECORD","record":{"stream":"users","emitted_at":1}}', "without data"),
    "no-stream": (b'{"type":"RECORD","record":{"data":{"id":1}}}', "RECORD"),
    "no-record": (b'{"type":"RECORD"}', "without a record"),
    "state-unknown-type": (b'{"type":"STATE","state":{"type":"PER_TABLE","data":{}}}', "unknown type"),
    "state-not-an-object": (b'{"type":"STATE","state":[1]}', "without a state object"),
    "state-no-descriptor": (b'{"type":"STATE","state":{"type":"STREAM","stream":{}}}', "descriptor"),
    # What `state set` would refuse: a sync must not commit a state the user cannot set back.
    "state-stream-state-not-an-object": (
        b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"users"},'
        b'"stream_state":"abc"}}}',
        "stream_state of 'users' must be an object or null",
    ),
    "state-empty-stream-name": (
        b'{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":""},"stream_state":{}}}}',
        "stream_descriptor.name",
    ),
    "state-mixes-types": (
        b'{"type":"STATE","state":{"type":"GLOBAL","global":{"shared_state":{}}}}',
        "STREAM and GLOBAL",
    ),
    "state-mixes-legacy": (b'{"type":"STATE","state":{"data":{"cursor":1}}}', "STREAM and LEGACY"),
    "state-invalid-utf8": (b'{"type":"STATE","state":{"type":"LEGACY","data":"\xff"}}', "STATE"),
    "deep-state": (deep(b'{"type":"STATE","state":{"type":"LEGACY","data":', b"}}"), "deeply"),
}


@pytest.mark.parametrize(("line", "why"), BAD_MESSAGES.values(), ids=BAD_MESSAGES.keys())
def test_a_bad_record_or_state_is_a_source_failure_and_never_reaches_the_destination(
    syncs: Syncs, line: bytes, why: str
) -> None:
    run = syncs.run([records(USERS, 3), state(USERS), raw(line), records(USERS, 2), state(USERS)])

    assert_source_failure(run, why)
    if b'"users"' in line:
        assert "users" in run.failure.message  # names the stream ...
    assert "\\xff" not in run.failure.message and "cursor" not in run.failure.message  # ... not the data
    # What came before the bad line is delivered and committed; nothing of it or after it is.
    assert len(run.received_records()) == 3
    assert run.output.records_committed == 3
    assert run.output.state == [stream_state(USERS, 3)]


def test_a_source_that_keeps_writing_after_a_bad_record_is_stopped(syncs: Syncs) -> None:
    run = syncs.run([records(USERS, 2), raw(record_line(b'"not an object"')), forever()])

    assert_source_failure(run, "not a JSON object")
    assert len(run.received_records()) == 2


def test_an_unexpected_error_on_the_record_path_fails_the_sync_and_stops_the_source(
    syncs: Syncs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in for a bug: no real input makes the record path raise anything but what it
    handles (the fuzz tests try), so the fault is injected into forward after its first lines."""
    real = record_path.forward

    def broken(source: Any, sink: Any, *args: Any, **options: Any) -> None:
        real(_first_lines(source, 3), sink, *args, **options)
        raise RuntimeError("a secret-looking record value")

    monkeypatch.setattr(record_path, "forward", broken)
    run = syncs.run([records(USERS, 3), forever()])

    assert run.output.status is ReplicationStatus.FAILED
    assert (run.failure.origin, run.failure.type) == (FailureOrigin.REPLICATION, FailureType.SYSTEM_ERROR)
    assert "RuntimeError" in run.failure.message and "secret" not in run.failure.message
    assert _trailing_statuses(run) == []
    assert len(run.received_records()) == 3


def _first_lines(source: Any, count: int) -> list[bytes]:
    return [source.readline() for _ in range(count)]
