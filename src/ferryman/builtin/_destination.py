"""The input side of the built-in destinations: reading stdin and releasing states.

:func:`read_chunks` reads stdin in large blocks and hands out runs of complete lines.
:func:`load` drives a :class:`Sink` with them: records go to the sink's buffers, STATE messages
wait in a queue and are echoed (each followed by a flush of stdout) only once the sink has
committed everything received before them.

States are released in groups rather than one commit per state, which would make a source
that checkpoints every thousand records very slow to load. The queue is committed when the
sink's buffers are full, when the oldest waiting state is older than ``commit_interval``
seconds, when stdin has had nothing to read for ``IDLE_COMMIT_S`` (so an idle or slow source
gets its states back within that moment), and at the end of the input. A source that writes in
bursts (most do: a page, a batch, a pool of generators) leaves stdin empty for a few
milliseconds many times a second; committing at each such gap made commits of a few hundred
records, each costing DuckDB a statement's fixed price, about half the destination's CPU.

Held records: records of an ``append`` or ``overwrite`` stream received after the stream's last
state are *held*, never made durable, until a later state covers them or the stream
*completes*. A state covering a stream is a STREAM state for it, or any GLOBAL or LEGACY state
(checkpointed progress). A stream completes when a TRACE ``STREAM_STATUS`` message marks it
``COMPLETE``: Ferryman's worker, like the Airbyte platform, sends one for every configured stream
after the source has ended successfully, and none when it failed. At the end of the input what is
held for a stream that did not complete is dropped, and :func:`load` logs a warning for it: the
next attempt (or the next job) resumes from the stream's last state and sends those records
again, so each is stored once. ``append_dedup`` streams are not held in the typed destinations:
their merge makes a record sent again replace its first copy. Where the held records wait (a
spill file, the part of a file past its committed size) is the sink's own.

Overwritten streams: a sink keeps what it receives for an overwrite stream apart (a staging
table, a staging file) until the stream completes, and only then replaces the old data with it,
in one transaction. A state covering the stream makes the records received before it durable in
the staging table, which belongs to the sync (its ``sync_id``, the job): an attempt that fails
leaves the old data as it was and the staging table for the job's next attempt, which resumes
from that state and adds to it. At the end of the input the sink leaves what is staged for each
overwrite stream that did not complete (or drops it, for a sync without a ``sync_id``: nothing
can resume it). Every other TRACE message is ignored.

Streams per commit: a sink may say how many streams one commit may touch
(``streams_per_commit``; destination-postgres does, from the server's lock table). The loader
then commits the waiting states before a RECORD or a STREAM state would open one stream more
than that since the last commit, so each commit stays one transaction with its states.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple, Protocol, runtime_checkable

import msgspec

from ferryman.builtin._catalog import ConfiguredStream, StreamKey, completed_stream, state_scope
from ferryman.builtin._refused import RefusedLines, stream_label
from ferryman.builtin._runtime import BUFFER_SIZE, ConfigError, Output
from ferryman.protocol.codec import Envelope, parse_message

FLUSH_BYTES = 32 << 20
COMMIT_INTERVAL = 1.0
IDLE_COMMIT_S = 0.2
QUIET_S = 0.5

_decoder = msgspec.json.Decoder(Envelope)
_NOT_A_MESSAGE = (msgspec.DecodeError, msgspec.ValidationError)


def grow_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe buffer (Linux), so each read moves more data."""
    with contextlib.suppress(Exception):
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, BUFFER_SIZE)


def _would_block(fd: int, timeout_s: float = 0) -> bool:
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
    except (OSError, ValueError):
        return False
    return not ready


def read_chunks(
    fd: int = 0, on_idle: Callable[[], None] | None = None, size: int = BUFFER_SIZE
) -> Iterator[bytes]:
    """Blocks of complete lines from ``fd``; a final line without a newline comes last.

    ``on_idle`` is called before any read that would have to wait for more input.
    """
    grow_pipe(fd)
    tail: list[bytes] = []
    while True:
        if on_idle is not None and _would_block(fd):
            on_idle()
        data = os.read(fd, size)
        if not data:
            break
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            tail.append(data)
            continue
        if tail:
            tail.append(data[:cut])
            block = b"".join(tail)
            tail.clear()
        else:
            block = data[:cut] if cut < len(data) else data
        if cut < len(data):
            tail.append(data[cut:])
        yield block
    rest = b"".join(tail)
    if rest.strip():
        yield rest + b"\n"


class PlacedTable(Protocol):
    """Where a stream's rows go: enough to tell two streams that would share a table."""

    @property
    def schema(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def target(self) -> str: ...


def refuse_shared_tables(
    catalog: list[ConfiguredStream], tables: Mapping[StreamKey, PlacedTable], *, ascii_case: bool = False
) -> None:
    """Two streams whose names normalise to one table would overwrite each other's rows: refused
    before anything is written. ``ascii_case``: the database does not tell names apart by the
    case of their ASCII letters, quoted or not (DuckDB), so ``Users`` and ``users`` share one."""

    def fold(name: str) -> str:
        return name.encode().lower().decode() if ascii_case else name  # bytes.lower: ASCII only

    owners: dict[tuple[str, str], str] = {}
    for stream in catalog:
        table = tables[stream.key]
        owner = owners.setdefault((fold(table.schema), fold(table.name)), stream.label)
        if owner != stream.label:
            raise ConfigError(f"streams '{owner}' and '{stream.label}' would share table {table.target}")


class Unfinished(NamedTuple):
    """A held stream that did not complete, as the sink left it at the end of the input."""

    overwrite: bool  # its old data was kept (an overwrite stream); else an append stream
    kept: int  # records committed with its states, staged for the sync's next attempt (overwrite)
    dropped: int  # records dropped: received after its last state, or staged with no sync to resume


class Sink(Protocol):
    """Where a destination puts records.

    ``buffers`` maps each configured stream to the list the loader appends that stream's RECORD
    lines to (without their newline); the sink empties the lists when it flushes, or puts new
    empty ones in their place.
    """

    buffers: dict[StreamKey, list[bytes]]

    def flush(self) -> None:
        """Move the buffered records out of memory (not necessarily durably)."""

    def checkpoint(self, scope: StreamKey | None) -> None:
        """A STATE covering ``scope`` (None: every stream) was received: the records of a held
        stream received before it are made durable by the commit that releases it; those after
        it are not, until a later state covers them or the stream completes."""

    def commit(self, complete: set[StreamKey]) -> None:
        """Flush, then make durable every record received so far but those of a held stream
        after its last state; each held stream in ``complete`` (only the last commit names any)
        takes everything it received, and an overwrite stream replaces its old data with it.
        """

    def leave_staged(self) -> dict[StreamKey, Unfinished]:
        """After the last commit: drop what is held for each stream that did not complete; each
        such overwrite stream keeps its old data. Returns those overwrite streams, and the append
        streams that had records dropped."""

    def storable_line(self, key: StreamKey, line: bytes) -> bytes:
        """A RECORD line of stream ``key`` that msgspec refused for a lone UTF-16 surrogate escape
        (Python's json reads it): the line to buffer in its place, which :meth:`flush` stores as
        faithfully as the target can hold it. Raises :class:`~ferryman.builtin._refused.UnstorableRecord`
        to fail the destination instead (see :mod:`ferryman.builtin._refused`)."""


@runtime_checkable
class BackgroundSink(Sink, Protocol):
    """A sink that commits while the loader goes on reading: :meth:`start_commit` begins what
    :meth:`Sink.commit` does, and the states it covers are echoed once :meth:`commit_done` says
    it is durable. At most one commit is in flight; starting the next one waits for it."""

    def start_commit(self, complete: set[StreamKey]) -> None:
        """Flush, then begin what :meth:`Sink.commit` does."""

    def commit_done(self, block: bool) -> bool:
        """Whether the last commit started is durable; with ``block``, wait until it is."""


class _StateQueue:
    def __init__(self, sink: Sink, out: Output) -> None:
        self.sink = sink
        self.background = sink if isinstance(sink, BackgroundSink) else None
        self.out = out
        self.committing: list[bytes] = []  # states whose commit is in flight (BackgroundSink)
        self.lines: list[bytes] = []
        self.since = 0.0
        self.buffered = 0  # bytes read since the sink last flushed
        # The sink's streams_per_commit, and the streams opened since the last commit.
        self.limit: int | None = getattr(sink, "streams_per_commit", None)
        self.opened: set[StreamKey] = set()

    def add(self, line: bytes) -> None:
        message = parse_message(line)
        scope = state_scope(message) if message is not None else None
        if scope is not None and self.limit is not None:
            self.open(scope)
        if not self.lines:
            self.since = time.monotonic()
        self.lines.append(line)
        self.sink.checkpoint(scope)

    def open(self, key: StreamKey) -> None:
        """A RECORD or STATE of stream ``key`` comes (with a sink's ``limit``): past the limit,
        the commit of what came before it first."""
        if key not in self.opened:
            if len(self.opened) >= self.limit:  # type: ignore[operator]
                self.release(force=True)
            self.opened.add(key)

    def release(self, complete: set[StreamKey] | None = None, force: bool = False) -> None:
        """Commit, then echo every waiting state in order.

        ``complete`` is given for the last commit, at the end of the input: the streams marked
        COMPLETE, whose staged data replaces their old data. ``force``: commit even with no
        state waiting.
        """
        if not self.lines and complete is None and not force:
            return
        if self.out.reader_gone():
            # The worker that reads the echoes is gone (killed): a commit now would store records
            # whose states it can never save, so its retry would send them again (twice, under
            # append). Stop, committing nothing more; the retry resumes from the saved state.
            raise BrokenPipeError("the destination's output has no reader: nothing more is committed")
        done = complete or set()
        self.buffered = 0
        self.opened.clear()
        if self.background is not None:
            self.settle(block=True)
            self.background.start_commit(done)
            self.committing, self.lines = self.lines, []
        else:
            self.sink.commit(done)
            for line in self.lines:
                self.out.state(line)
            self.lines.clear()

    def settle(self, block: bool) -> None:
        """Echo the states of a background commit once it is durable (waiting, with ``block``)."""
        if self.background is not None and self.background.commit_done(block):
            for line in self.committing:
                self.out.state(line)
            self.committing.clear()

    def due(self, commit_interval: float) -> bool:
        return bool(self.lines) and time.monotonic() - self.since >= commit_interval


def load(
    name: str,
    sink: Sink,
    out: Output,
    *,
    fd: int = 0,
    flush_bytes: int = FLUSH_BYTES,
    commit_interval: float = COMMIT_INTERVAL,
    on_quiet: Callable[[], None] | None = None,
) -> None:
    """Feed the messages on ``fd`` to ``sink`` until the input ends, then commit.

    Records of streams missing from ``sink.buffers`` are skipped with one warning per stream.
    TRACE ``STREAM_STATUS`` ``COMPLETE`` messages mark their streams done for the last commit;
    other TRACE messages and messages other than RECORD, STATE and TRACE are ignored. Lines
    msgspec refuses take the slow path of :mod:`ferryman.builtin._refused`: a RECORD holding a
    lone surrogate escape is stored (:meth:`Sink.storable_line`), any other plainly-RECORD line
    fails the destination, and lines that are no protocol message are skipped, their count
    logged at the end. ``on_quiet`` is called, after the waiting states are released,
    whenever the input has had nothing to read for ``QUIET_S`` seconds (the source is slow or
    idle), so a sink can let go of what other processes may be waiting for.
    """
    buffers = sink.buffers
    unknown: set[StreamKey] = set()
    complete: set[StreamKey] = set()
    states = _StateQueue(sink, out)
    limited = states.limit is not None
    decode = _decoder.decode

    def unknown_stream(key: StreamKey) -> None:
        if key not in unknown:
            unknown.add(key)
            out.log("WARN", f"{name}: skipping records of '{stream_label(key)}', not in the catalog")

    refused = RefusedLines(sink, unknown_stream)

    def idle() -> None:
        if states.lines and not _would_block(fd, IDLE_COMMIT_S):
            return  # a gap between two bursts: the commit waits for a real pause (or its interval)
        states.release()
        states.settle(block=True)
        if on_quiet is not None and _would_block(fd, QUIET_S):
            on_quiet()

    for block in read_chunks(fd, on_idle=idle):
        states.buffered += len(block)
        if b"\r" in block:  # only JSON whitespace can hold a raw CR; keep lines one-per-\n
            block = block.replace(b"\r", b" ")
        for line in block.split(b"\n"):
            try:
                envelope = decode(line)
            except _NOT_A_MESSAGE:
                refused.take(line)
                continue
            head = envelope.record
            if head is not None and envelope.type == "RECORD":
                key = (head.namespace, head.stream)
                buffer = buffers.get(key)
                if buffer is not None:
                    if limited and not buffer:  # its first record since the last flush
                        states.open(key)
                        buffer = buffers[key]  # a commit puts new lists in the flushed ones' place
                    buffer.append(line)
                else:
                    unknown_stream(key)
            elif envelope.type == "STATE":
                states.add(line)
            elif envelope.type == "TRACE":
                message = parse_message(line)
                done = completed_stream(message) if message is not None else None
                if done is not None:
                    complete.add(done)
        if states.buffered >= flush_bytes:
            if states.lines:
                states.release()
            else:
                sink.flush()
                states.buffered = 0
        elif states.due(commit_interval):
            states.release()
        states.settle(block=False)
    if limited and len(states.opened | complete) > states.limit:  # type: ignore[operator]
        # The last commit would be cut into parts (the swaps, the held records of the completed
        # streams): the waiting states get a commit of their own first, so no part stores
        # records whose state is not echoed, which a killed destination's retry would send again.
        states.release()
    states.release(complete=complete)
    states.settle(block=True)
    if refused.not_messages:
        count = refused.not_messages
        lines = "1 line of input that is" if count == 1 else f"{count} lines of input that are"
        out.log("WARN", f"{name}: skipped {lines} no protocol message")
    for (namespace, stream), left in sink.leave_staged().items():
        label = f"{namespace}.{stream}" if namespace else stream
        if not left.overwrite:
            out.log(
                "WARN",
                f"{name}: dropped the {_records(left.dropped)} of stream '{label}' received"
                " after its last state: it did not complete (no COMPLETE status); the next attempt"
                " reads them again from that state",
            )
            continue
        what = [f"kept the old data of overwrite stream '{label}': it did not complete (no COMPLETE status)"]
        if left.kept:
            what.append(
                f"{_records(left.kept)} committed with its states stay staged for the next attempt of"
                " this sync, which resumes from its last state"
            )
        if left.dropped:
            what.append(f"dropped the {_records(left.dropped)} received after its last state")
        out.log("WARN", f"{name}: " + "; ".join(what))


def _records(count: int) -> str:
    return "1 record" if count == 1 else f"{count} records"
