"""The record path between two real pipes: tee(2) and splice(2) must forward what the chunked loop does.

When both ends are the launcher's pipes (Linux, C extension built), ``forward`` reads a copy of
the source's pipe with tee and moves the shortcut RECORDs on with splice. Every test here runs the
same bytes through that path and through the chunked loop over in-memory files, and compares what
the destination got, the counts and what the worker was handed. Syncs through the launcher
(contract and e2e tests) take this path too.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.launchers.base import TimedPipeWriter, enlarge_pipe
from ferryman.launchers.pipes import PipeReader
from ferryman.protocol.catalog import NamespaceMapping
from ferryman.workers import record_path
from ferryman.workers.record_path import SCANNER, TEE, BadSourceMessage, forward
from ferryman.workers.tracker import MessageTracker, StreamKey
from tests.unit.test_record_path import Handler
from tests.unit.test_record_path_fuzz import lines as any_lines

pytestmark = pytest.mark.skipif(SCANNER is None or TEE is None, reason="needs the C extension on Linux")


@pytest.fixture(autouse=True, params=["splice-every-look", "splice-full-pipes"])
def splice_min(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Every test runs twice: splicing whatever tee finds (so small inputs exercise tee and
    splice too) and with the real threshold, under which a pipe holding little is read and
    written as the chunked loop does."""
    size = 1 if request.param == "splice-every-look" else record_path._SPLICE_MIN_BYTES
    monkeypatch.setattr(record_path, "_SPLICE_MIN_BYTES", size)
    return size


STREAMS: list[StreamKey] = [("users", None), ("orders", "shop")]


def record(stream: str, payload: str = "x", namespace: str | None = None) -> bytes:
    body: dict[str, object] = {"stream": stream, "data": {"id": 1, "payload": payload}, "emitted_at": 1}
    if namespace is not None:
        body["namespace"] = namespace
    return orjson.dumps({"type": "RECORD", "record": body}) + b"\n"


def state(value: int) -> bytes:
    return orjson.dumps({"type": "STATE", "state": {"type": "LEGACY", "data": {"v": value}}}) + b"\n"


@dataclass
class Outcome:
    output: bytes
    counts: dict[StreamKey, tuple[int, int]]
    handed: dict[str, list[object]]
    error: str | None = None
    sink_raw: object = field(default=None, repr=False)


def _outcome(tracker: MessageTracker, handler: Handler, output: bytes, error: str | None) -> Outcome:
    counts = {key: (counter[0], counter[1]) for key, counter in tracker.emitted.items()}
    # Every stream counted was noted as moved (what the next STATE sets aside, the splice too).
    assert tracker.moved == {id(counter) for counter in tracker.emitted.values() if counter[0]}
    handed = {
        "states": list(handler.states),
        "others": list(handler.others),
        "garbage": list(handler.garbage),
        "unknown": list(handler.unknown),
    }
    return Outcome(output, counts, handed, error)


def in_memory(data: bytes) -> Outcome:
    """The chunked loop over in-memory files: the reference."""
    tracker, handler, sink = MessageTracker(STREAMS), Handler(), io.BytesIO()
    error = None
    try:
        forward(io.BufferedReader(io.BytesIO(data)), sink, tracker, handler, NamespaceMapping(), SCANNER, TEE)
    except BadSourceMessage as exc:
        error = str(exc)
    return _outcome(tracker, handler, sink.getvalue(), error)


class Pipes:
    """A source pipe fed by a thread (in the given pieces) and a destination pipe drained by one."""

    def __init__(self, pieces: Iterator[bytes], large: bool = True) -> None:
        source_out, self.source_in = os.pipe()
        self.destination_out, destination_in = os.pipe()
        if large:
            enlarge_pipe(source_out)
            enlarge_pipe(self.destination_out)
        self.source = io.BufferedReader(PipeReader(source_out), 1 << 20)
        self.writer = TimedPipeWriter(destination_in, "wb")
        self.sink = io.BufferedWriter(self.writer, 1 << 20)
        self.received = bytearray()
        self.reading = threading.Event()
        self.feeder = threading.Thread(target=self._feed, args=(pieces,), daemon=True)
        self.drainer = threading.Thread(target=self._drain, daemon=True)

    def _feed(self, pieces: Iterator[bytes]) -> None:
        with open(self.source_in, "wb", buffering=0, closefd=True) as out:
            for piece in pieces:
                out.write(piece)

    def _drain(self) -> None:
        self.reading.wait()
        with open(self.destination_out, "rb", buffering=0, closefd=True) as incoming:
            while chunk := incoming.read(1 << 16):
                self.received += chunk

    def run(self, read_at_once: bool = True) -> Outcome:
        tracker, handler = MessageTracker(STREAMS), Handler()
        if read_at_once:
            self.reading.set()
        self.feeder.start()
        self.drainer.start()
        error = None
        try:
            forward(self.source, self.sink, tracker, handler, NamespaceMapping(), SCANNER, TEE)
        except BadSourceMessage as exc:
            error = str(exc)
        finally:
            self.feeder.join(30)
            self.source.close()
            self.sink.close()
            self.reading.set()
            self.drainer.join(30)
        return _outcome(tracker, handler, bytes(self.received), error)


def cut(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    at = 0
    for size in sizes:
        yield data[at : at + size]
        at += size
    yield data[at:]


def test_the_launchers_pipes_take_the_spliced_path() -> None:
    """Guards the comparisons below: they would pass trivially if both ran the chunked loop."""
    pipes = Pipes(iter([record("users")]))
    assert record_path._splice_ends(pipes.source, pipes.sink) is not None
    assert record_path._splice_ends(io.BufferedReader(io.BytesIO(b"")), io.BytesIO()) is None
    pipes.run()


def test_records_states_and_other_lines_arrive_as_the_chunked_loop_forwards_them() -> None:
    lines = [
        b'{"type":"LOG","log":{"level":"INFO","message":"starting"}}\n',
        *[record("users", f"u{i}") for i in range(500)],
        state(1),
        b"not json at all\n",
        record("orders", "needs the decode: a namespace", namespace="shop"),
        b'{"type": "RECORD", "record": {"stream": "users", "data": {"spaced": true}}}\n',
        b'{"type":"RECORD","record":{"stream":"users","data":{"id":1,}}}\n',  # broken JSON: dropped
        *[record("users", "é" * 40) for _ in range(300)],
        record("unknown"),
        state(2),
        record("users", "last, without a newline")[:-1],
    ]
    data = b"".join(lines)
    expected = in_memory(data)
    assert expected.counts[("users", None)][0] == 802
    assert expected.counts[("orders", "shop")][0] == 1
    assert Pipes(iter([data])).run() == expected
    assert Pipes(cut(data, [100, 7000, 1, 33_333])).run() == expected


def test_a_line_longer_than_the_pipe_arrives_whole_between_the_others() -> None:
    huge = record("users", "h" * (3 << 20))
    data = record("users", "before") + huge + record("users", "after") + state(1)
    outcome = Pipes(cut(data, [1 << 16] * 80)).run()
    assert outcome == in_memory(data)
    assert outcome.output == data


def test_an_unfinished_line_at_the_head_of_the_pipe_waits_for_its_end(splice_min: int) -> None:
    """The source writes a record and half of the next, then nothing until the first arrived:
    tee sees only the half, so the path must read it out and wait for the rest (no spinning)."""
    if splice_min > 1:
        pytest.skip("under the threshold the first record waits in the buffer for a STATE")
    first, second = record("users", "first"), record("users", "second")
    arrived = threading.Event()

    def pieces() -> Iterator[bytes]:
        yield first + second[:20]
        assert arrived.wait(30)
        yield second[20:] + state(1)

    pipes = Pipes(pieces())
    watcher = threading.Thread(target=lambda: _wait_for(pipes, len(first), arrived), daemon=True)
    watcher.start()
    outcome = pipes.run()
    assert outcome.output == first + second + state(1)
    assert outcome.counts[("users", None)] == (2, len(first) + len(second))


def _wait_for(pipes: Pipes, size: int, arrived: threading.Event) -> None:
    while len(pipes.received) < size:
        threading.Event().wait(0.001)
    arrived.set()


def test_a_broken_record_fails_the_source_after_what_came_before_it() -> None:
    good = [record("users", str(i)) for i in range(50)]
    data = b"".join(good) + b'{"type":"RECORD","record":{"stream":"users","data":[1]}}\n' + record("users")
    outcome = Pipes(iter([data])).run()
    assert outcome == in_memory(data)
    assert outcome.error is not None and "not a JSON object" in outcome.error
    assert outcome.output == b"".join(good)


def test_a_destination_that_reads_nothing_shows_as_blocked_and_a_gone_one_as_an_os_error() -> None:
    data = b"".join(record("users", "y" * 400) for _ in range(4000))  # ~1.8 MB: over the pipe and the buffer
    pipes = Pipes(iter([data]), large=False)
    seen_blocked = threading.Event()

    def watch() -> None:
        while pipes.writer.blocked_since is None:
            threading.Event().wait(0.001)
        seen_blocked.set()
        pipes.reading.set()

    threading.Thread(target=watch, daemon=True).start()
    outcome = pipes.run(read_at_once=False)
    assert seen_blocked.is_set()
    assert pipes.writer.blocked_since is None
    assert outcome.output == data

    gone = Pipes(iter([data]), large=False)
    os.close(gone.destination_out)  # the destination exited
    gone.feeder.start()
    with pytest.raises(OSError):
        forward(gone.source, gone.sink, MessageTracker(STREAMS), Handler(), NamespaceMapping(), SCANNER, TEE)
    gone.source.close()  # the feeder's write fails or ends once nobody reads
    gone.feeder.join(30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_lines, max_size=10), st.booleans(), st.lists(st.integers(1, 70_000), max_size=6))
def test_any_bytes_cut_anywhere_are_forwarded_as_the_chunked_loop_forwards_them(
    chunks: list[bytes], last_newline: bool, sizes: list[int]
) -> None:
    data = b"\n".join(chunks) + (b"\n" if last_newline else b"")
    assert Pipes(cut(data, sizes)).run() == in_memory(data)
