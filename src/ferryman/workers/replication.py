"""The sync worker: source stdout -> (envelope inspection) -> destination stdin.

Threads, each blocking on one pipe (asyncio costs twice as much per line on this path):

    record path       reads source stdout, counts, forwards RECORD and STATE bytes as they came
    destination out   reads the destination's STATE echoes (commits), TRACE, LOG and CONTROL
    2 x stderr        log every line of both connectors
    supervisor        the caller's thread: cancel, timeouts, grace periods, progress, saving
                      confirmed states (see checkpoints)

Only RECORD and STATE reach the destination. A STATE is flushed at once, records are written
through a 1 MiB buffer. A record is re-encoded only when namespace mapping renames it.

The supervisor sleeps until something happens: a thread of ours sets ``wake`` when a pipe ends,
a thread finishes, a stop is asked for or a stream's status changes. Otherwise it wakes at the
next deadline it keeps (progress, a state due to be saved, a timeout) and at least once a
second, which is how soon it sees a cancel. Only while a connector is on its way out (its input
ended, or it was told to stop) does it look every 50 ms, so an exit is reaped at once.
"""

from __future__ import annotations

import contextlib
import resource
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from ferryman.errors import FerrymanError, UserInputError, first_line
from ferryman.jobs.failures import FailureOrigin, FailureReason, FailureType, ordered
from ferryman.launchers import ConnectorLauncher, ConnectorProcess, Launcher, LaunchRequest
from ferryman.protocol import messages
from ferryman.protocol.catalog import StateNames, map_catalog, stream_descriptors, with_generation
from ferryman.protocol.codec import encode, loads, parse_message
from ferryman.protocol.depth import MAX_DEPTH
from ferryman.protocol.lenient import LenientMessage, read_leniently
from ferryman.protocol.state import (
    StateAggregator,
    connector_state_file,
    state_problem,
    state_too_deep,
    state_type,
)
from ferryman.workers import files, record_path
from ferryman.workers.attempt_log import AttemptLog
from ferryman.workers.checkpoints import StateSink, checkpoints_for
from ferryman.workers.lifecycle import WORKER, ConnectorLifecycle, Phase, StderrDrain
from ferryman.workers.lines import LineTooLong, lines_of
from ferryman.workers.local_paths import local_root_for, to_host, to_mount
from ferryman.workers.models import (
    AttemptContext,
    ProgressCallback,
    ReplicationStatus,
    StateCommit,
    SyncInput,
    SyncOutput,
    SyncProgress,
)
from ferryman.workers.notices import Notices, as_object, control_config
from ferryman.workers.tracker import MessageTracker

_TICK_S = 0.05  # how often the supervisor looks while a connector is on its way out
_IDLE_S = 1.0  # ... and at least this often otherwise: how soon it sees a cancel
_DISCARD_CHUNK = 1 << 16
SOURCE, DESTINATION = "source", "destination"


def _now_ms() -> int:
    return int(time.time() * 1000)


class ReplicationWorker:
    def __init__(self, launcher: Launcher | None = None, progress_interval_s: float = 1.0) -> None:
        self.launcher = launcher or ConnectorLauncher()
        self.progress_interval_s = progress_interval_s

    def run(
        self,
        sync: SyncInput,
        ctx: AttemptContext,
        cancel: threading.Event | None = None,
        on_progress: ProgressCallback | None = None,
        on_state: StateSink | None = None,
    ) -> SyncOutput:
        """Run one sync. ``on_state`` hears of each state the destination confirms: a plain
        callback every one as it arrives, a StateCheckpoints coalesced by its interval (and
        flushed before this returns, however the sync ends)."""
        replication = _Replication(self.launcher, sync, ctx, cancel or threading.Event())
        return replication.run(on_progress, on_state, self.progress_interval_s)


class _Replication:
    """One run of the sync worker; holds what its threads share."""

    def __init__(
        self, launcher: Launcher, sync: SyncInput, ctx: AttemptContext, cancel: threading.Event
    ) -> None:
        self.launcher = launcher
        self.sync = sync
        self.ctx = ctx
        self.cancel = cancel
        self.log = AttemptLog(ctx.workdir / files.LOG_FILE, ctx.secrets, ctx.lifecycle.max_attempt_log_bytes)
        self.tracker = MessageTracker(stream_descriptors(sync.catalog))
        self.states = StateAggregator(sync.state)
        self.state_names = StateNames(sync.catalog, sync.namespace_mapping)
        self.failures: list[FailureReason] = []
        self.wake = threading.Event()  # something the supervisor must see happened
        self.notices = Notices(self.log, self.tracker, self.failures, self._status_changed)
        self.checkpoints = checkpoints_for(None)
        self._flush_asked = False  # a stream's status changed: save the confirmed state now
        # ... and once the destination has confirmed this many states (those sent before it)
        self._save_when_committed: int | None = None
        self._commit_lock = threading.Lock()  # a confirmed state and what it adds to the stats
        self._last_committed: dict[str, Any] = {}
        self._unsaved_since: float | None = None  # a save failed then, none has succeeded since
        self.source_eof = threading.Event()  # the source's stdout ended
        self.source_exited = threading.Event()  # ... and the source process is gone
        self.pump_done = threading.Event()  # the destination's stdin is closed
        self._source_exit_error: str | None = None
        self.cancelled = False  # the cancel signal was seen and the connectors told to stop
        self.destination_gone = False  # a write to the destination failed
        self.destination_quit_early = False  # it exited while the source was still sending
        self.input_ending = threading.Event()  # the record path is closing the destination's input
        self._destination_stopped = False  # the worker stopped it for a failure already recorded
        self.source_update: dict[str, Any] | None = None
        self.destination_update: dict[str, Any] | None = None
        self._warned_streams: set[tuple[str, str | None]] = set()
        self._source_stopped_for: str | None = None
        self._source_state_type: str | None = None  # the type of this sync's first source STATE
        self.stop_requested: str | None = None  # a thread asks the supervisor to stop the source
        self.stop_destination = False  # ... and the destination too
        self._cpu_lock = threading.Lock()
        self.cpu_s = 0.0  # CPU used by this sync's worker threads, not the connectors

    # -- set-up ---------------------------------------------------------------------------

    def _write_files(self) -> tuple[list[str], list[str]]:
        """Write the connectors' inputs; arguments carry absolute paths, so the launcher picks the cwd."""
        workdir, sync = self.ctx.workdir.absolute(), self.sync
        destination_catalog = map_catalog(sync.catalog, sync.namespace_mapping)
        if sync.generation_id is not None:
            destination_catalog = with_generation(destination_catalog, sync.sync_id, sync.generation_id)
        source_config = to_host(sync.source.config, self._local_root(SOURCE))
        destination_config = to_host(sync.destination.config, self._local_root(DESTINATION))
        read = [
            "read",
            "--config",
            str(files.write_private_json(workdir / files.SOURCE_CONFIG, source_config)),
            "--catalog",
            str(files.write_private_json(workdir / files.SOURCE_CATALOG, sync.catalog)),
        ]
        state = connector_state_file(sync.state) if sync.state else None
        if state is not None:  # as Airbyte: no --state for a LEGACY state without data
            read += ["--state", str(files.write_private_json(workdir / files.INPUT_STATE, state))]
        write = [
            "write",
            "--config",
            str(files.write_private_json(workdir / files.DESTINATION_CONFIG, destination_config)),
            "--catalog",
            str(files.write_private_json(workdir / files.DESTINATION_CATALOG, destination_catalog)),
        ]
        return read, write

    def _local_root(self, role: str) -> Path | None:
        side = self.sync.source if role == SOURCE else self.sync.destination
        return local_root_for(side.connector, self.ctx.local_root)

    def _launch(self, role: str, args: list[str], with_stdin: bool) -> ConnectorProcess:
        side = self.sync.source if role == SOURCE else self.sync.destination
        self.log.info(WORKER, f"starting the {role}: {side.connector.ref} {' '.join(args)}")
        process = self.launcher.launch(
            LaunchRequest(
                side.connector,
                args,
                self.ctx.workdir,
                role,
                with_stdin,
                job_id=self.ctx.job_id,
                attempt=self.ctx.attempt,
                job_type=self.ctx.job_type or "sync",
            )
        )
        self.log.info(WORKER, f"the {role} runs as {process.describe()}")
        return process

    # -- the run --------------------------------------------------------------------------

    def run(
        self,
        on_progress: ProgressCallback | None,
        on_state: StateSink | None,
        progress_interval_s: float,
    ) -> SyncOutput:
        started_ms = _now_ms()
        self.checkpoints = checkpoints_for(on_state)
        try:
            read_args, write_args = self._write_files()
            try:
                destination = self._launch(DESTINATION, write_args, with_stdin=True)
            except FerrymanError as exc:
                return self._launch_failed(FailureOrigin.DESTINATION, exc, started_ms)
            try:
                source = self._launch(SOURCE, read_args, with_stdin=False)
            except FerrymanError as exc:
                if destination.stdin is not None:
                    destination.stdin.close()
                self._finish_alone(destination)
                return self._launch_failed(FailureOrigin.SOURCE, exc, started_ms)
            self._run_pair(source, destination, on_progress, progress_interval_s)
            self._save_checkpoint(self.checkpoints.flush, last=True)  # the last confirmed state, always
            return self._output(started_ms)
        finally:
            self.log.close()

    def _run_pair(
        self,
        source: ConnectorProcess,
        destination: ConnectorProcess,
        on_progress: ProgressCallback | None,
        progress_interval_s: float,
    ) -> None:
        threads = [
            threading.Thread(target=self._timed(self._pump), args=(source, destination), name="record-path"),
            threading.Thread(
                target=self._timed(self._read_destination), args=(destination,), name="dest-out"
            ),
        ]
        for thread in threads:
            thread.daemon = True
            thread.start()
        drains = [
            StderrDrain(source, self.log, SOURCE),
            StderrDrain(destination, self.log, DESTINATION),
        ]
        src = ConnectorLifecycle(source, self.ctx.lifecycle, self.log)
        dst = ConnectorLifecycle(destination, self.ctx.lifecycle, self.log)
        supervisor_cpu = time.thread_time()
        try:
            self._supervise(src, dst, destination, threads[1], on_progress, progress_interval_s)
        except BaseException:  # Ctrl-C, or the caller's progress callback failed (a full store)
            for process in (source, destination):
                _abandon(process)
            with contextlib.suppress(Exception):  # what was confirmed is kept if it can be
                self.checkpoints.flush()
            raise
        self._add_cpu(time.thread_time() - supervisor_cpu)
        for thread in threads:
            thread.join()
        for drain in drains:
            drain.join(5)
        source.close()
        destination.close()
        self._add_cpu(sum(drain.cpu_s for drain in drains))
        self.log.flush_tail()  # the connectors' last lines, before what the worker says of their exit
        self._exit_failures(src, dst, drains)

    def _timed(self, target: Callable[..., None]) -> Callable[..., None]:
        """Run a thread's work and count the CPU it used towards the worker's total."""

        def run(*args: Any) -> None:
            try:
                target(*args)
            finally:
                self._add_cpu(time.thread_time())
                self.wake.set()

        return run

    def _add_cpu(self, seconds: float) -> None:
        with self._cpu_lock:
            self.cpu_s += seconds

    def _supervise(
        self,
        src: ConnectorLifecycle,
        dst: ConnectorLifecycle,
        destination: ConnectorProcess,
        dest_reader: threading.Thread,
        on_progress: ProgressCallback | None,
        progress_interval_s: float,
    ) -> None:
        settings = self.ctx.lifecycle
        started = time.monotonic()
        last_seen, last_change = -1, started
        next_progress = started + progress_interval_s if on_progress is not None else None
        while True:
            self.wake.clear()  # before looking: whatever happens from now on wakes the wait below
            now = time.monotonic()
            if self.cancel.is_set() and not self.cancelled:
                self.cancelled = True
                dst.stop(now, "the job was cancelled")
                src.stop(now, "the job was cancelled")
            if self.stop_requested is not None and not self._destination_stopped:
                # A worker thread failed, or the source broke the protocol: the source stops at
                # once; the destination gets the end of its input (without COMPLETE statuses)
                # and may still confirm what it stored, unless a thread of ours is broken.
                self._stop_source(src, now, self.stop_requested)
                if self.stop_destination:
                    self._destination_stopped = True
                    dst.stop(now, self.stop_requested)
            if self.destination_gone or (dst.exited and not self.input_ending.is_set()):
                # The destination is gone while the source still sends: stop the source now.
                self.destination_quit_early = True
                self._stop_source(src, now, "the destination exited")
            if self.source_eof.is_set():
                src.input_ended(now)
            elif self._source_stopped_for is None:
                seen = self.tracker.messages_seen()
                if seen != last_seen or self._blocked_since(destination) is not None:
                    last_seen, last_change = seen, now
                elif now - last_change > settings.source_heartbeat_timeout_s:
                    self._fail(
                        FailureOrigin.SOURCE,
                        FailureType.HEARTBEAT_TIMEOUT,
                        f"the source sent no record or state for {settings.source_heartbeat_timeout_s:g}s",
                    )
                    self._stop_source(src, now, "heartbeat timeout")
            if self.pump_done.is_set():
                dst.input_ended(now)
            elif not self._destination_stopped:
                blocked_since = self._blocked_since(destination)
                if blocked_since is not None and now - blocked_since > settings.destination_timeout_s:
                    self._fail(
                        FailureOrigin.DESTINATION,
                        FailureType.DESTINATION_TIMEOUT,
                        f"the destination accepted no input for {settings.destination_timeout_s:g}s",
                    )
                    self._destination_stopped = True
                    dst.stop(now, "destination timeout")
                    self._stop_source(src, now, "destination timeout")
            src_gone, dst_gone = src.tick(now), dst.tick(now)
            if src_gone and not self.source_exited.is_set():
                self._source_exit_error = src.exit_failure()
                self.source_exited.set()
            if src_gone and dst_gone and self.pump_done.is_set() and not dest_reader.is_alive():
                break
            if self._flush_asked and self.checkpoints.flush_gap_s() == 0.0:
                self._flush_asked = False
                self._save_checkpoint(self.checkpoints.flush)
            else:
                self._save_checkpoint(self.checkpoints.save_if_due)
            if on_progress is not None and next_progress is not None and now >= next_progress:
                next_progress = now + progress_interval_s
                on_progress(
                    SyncProgress(now - started, self.tracker.snapshot(), self.tracker.states_committed)
                )
            self.wake.wait(self._sleep_s(src, dst, destination, now, next_progress, last_change))

    def _sleep_s(
        self,
        src: ConnectorLifecycle,
        dst: ConnectorLifecycle,
        destination: ConnectorProcess,
        now: float,
        next_progress: float | None,
        last_change: float,
    ) -> float:
        """How long the supervisor may sleep before it has something to do, unless woken."""
        if any(side.phase not in (Phase.RUNNING, Phase.EXITED) for side in (src, dst)):
            return _TICK_S  # on its way out: reap it as soon as it exits
        settings = self.ctx.lifecycle
        deadlines = [now + _IDLE_S]
        if next_progress is not None:
            deadlines.append(next_progress)
        save_in = self.checkpoints.seconds_to_due()
        if save_in is not None:
            deadlines.append(now + save_in)
        if self._flush_asked:
            deadlines.append(now + self.checkpoints.flush_gap_s())
        if not self.source_eof.is_set() and self._source_stopped_for is None:
            deadlines.append(last_change + settings.source_heartbeat_timeout_s)
        blocked_since = self._blocked_since(destination)
        if blocked_since is not None and not self._destination_stopped:
            deadlines.append(blocked_since + settings.destination_timeout_s)
        return max(_TICK_S, min(deadlines) - now)

    def _stop_source(self, src: ConnectorLifecycle, now: float, reason: str) -> None:
        if self._source_stopped_for is None:
            self._source_stopped_for = reason
            src.stop(now, reason)

    # -- the record path ------------------------------------------------------------------

    def _pump(self, source: ConnectorProcess, destination: ConnectorProcess) -> None:
        sink = destination.stdin
        assert sink is not None
        try:
            if self._forward(source, sink):
                self.source_eof.set()
                self.wake.set()
                self.source_exited.wait()
                if self._source_succeeded():
                    self._send_streams_complete(sink)
        except OSError as exc:  # BrokenPipeError and friends: the destination went away
            self.destination_gone = True
            self.log.warn(WORKER, f"could not write to the destination: {exc}")
        except Exception as exc:  # never a dead thread and a success: see _forward
            self._internal_failure("the record path", exc)
        finally:
            self.source_eof.set()
            # Set before the close: a destination that exits once its input ends did not quit early.
            self.input_ending.set()
            try:
                sink.close()  # flushes what is buffered: the end of input for the destination
            except OSError as exc:
                self.destination_gone = True
                self.log.warn(WORKER, f"could not close the destination's input: {exc}")
            self.pump_done.set()

    def _forward(self, source: ConnectorProcess, sink: Any) -> bool:
        """The record path until the source's stdout ends; False when it stopped early, after
        reading the rest of the source's output (so the source never blocks on a full pipe)."""
        try:
            record_path.forward(
                source.stdout,
                sink,
                self.tracker,
                self,
                self.sync.namespace_mapping,
                max_line=self.ctx.lifecycle.max_line_bytes,
            )
            return True
        except (record_path.BadSourceMessage, LineTooLong) as exc:
            self._fail(FailureOrigin.SOURCE, FailureType.SYSTEM_ERROR, str(exc))
            self.stop_requested = "the source broke the protocol"
            self.wake.set()
        except OSError as exc:  # BrokenPipeError and friends: the destination went away
            self.destination_gone = True
            self.wake.set()
            self.log.warn(WORKER, f"could not write to the destination: {exc}")
        except ValueError:
            if not source.stdout.closed:
                raise
            return False  # the source's stdout was closed under us during shutdown
        except Exception as exc:  # a bug or an input nobody foresaw: fail now, never drop silently
            self._internal_failure("the record path", exc)
        _discard(source.stdout)
        return False

    def _internal_failure(self, where: str, exc: BaseException) -> None:
        """Fail the attempt for an unexpected exception in a worker thread and stop both
        connectors. The failure names only the exception's type (its text might quote a record);
        the attempt log gets the traceback."""
        trace = "".join(traceback.format_exception(exc))
        self.log.error(WORKER, f"{where} failed:\n{trace}")
        self._fail(
            FailureOrigin.REPLICATION,
            FailureType.SYSTEM_ERROR,
            f"{where} failed with {type(exc).__name__}; the attempt log has the details",
        )
        self.stop_requested = f"{where} failed"
        self.wake.set()

    def _source_succeeded(self) -> bool:
        source_failed = any(f.origin is FailureOrigin.SOURCE for f in self.failures)
        return not (self.cancelled or source_failed or self._source_stopped_for or self._source_exit_error)

    def _send_streams_complete(self, sink: Any) -> None:
        """Tell the destination each stream is complete, as the Airbyte platform does after a source
        exits 0: a destination may then replace an overwritten table, knowing it is whole."""
        emitted_at = _now_ms()
        for name, namespace in stream_descriptors(
            map_catalog(self.sync.catalog, self.sync.namespace_mapping)
        ):
            sink.write(encode(messages.trace_stream_status(name, "COMPLETE", emitted_at, namespace)))
        sink.flush()

    @staticmethod
    def _blocked_since(destination: ConnectorProcess) -> float | None:
        return destination.stdin_raw.blocked_since if destination.stdin_raw else None

    # -- RecordPathHandler: what the record path hands back --------------------------------

    def unknown_stream(self, key: tuple[str, str | None]) -> None:
        if key not in self._warned_streams:
            self._warned_streams.add(key)
            self.log.warn(WORKER, f"dropping records of stream {key[0]!r}: it is not in the catalog")

    def source_state(self, line: bytes) -> bytes | None:
        try:
            message = loads(line)
        except orjson.JSONDecodeError as exc:  # its message says where, never what
            raise record_path.BadSourceMessage(_unreadable(SOURCE, line, str(exc))) from None
        state = message.get("state")
        problem = state_problem(state, self._source_state_type, raw=line)
        if problem is not None:
            raise record_path.BadSourceMessage(f"the source sent {problem}")
        self._source_state_type = state_type(state)
        self.tracker.source_state(state)
        if self.state_names.identity:
            return line
        return encode({**message, "state": self.state_names.to_destination(state)})

    def not_a_message(self, line: bytes) -> None:
        self.notices.not_a_message(SOURCE, line)

    def source_message(self, line: bytes) -> None:
        message = parse_message(line)
        if message is None:
            self.notices.unreadable(FailureOrigin.SOURCE, _read_leniently(line), line, "read")
            return
        kind = message["type"]
        if kind == "TRACE":
            self.notices.trace(FailureOrigin.SOURCE, as_object(message.get("trace")), "read")
        elif kind == "LOG":
            self.notices.log_message(SOURCE, message)
        elif kind == "CONTROL":
            update = to_mount(control_config(message, self.log, SOURCE), self._local_root(SOURCE))
            if update is not None:
                self.log.add_secrets(self.ctx.secrets_of(SOURCE, update))
                self.log.info(SOURCE, "the source updated its configuration")
            self.source_update = update or self.source_update
        else:
            self.log.info(SOURCE, f"ignored a {kind} message: only RECORD and STATE are forwarded")

    # -- the destination's output ---------------------------------------------------------

    def _read_destination(self, destination: ConnectorProcess) -> None:
        try:
            for line in lines_of(destination.stdout, self.ctx.lifecycle.max_line_bytes, "destination"):
                self._destination_line(line)
        except LineTooLong as exc:
            self._fail(FailureOrigin.DESTINATION, FailureType.SYSTEM_ERROR, str(exc))
            self.stop_destination = True
            self.wake.set()
            _discard(destination.stdout)
        except (OSError, ValueError):
            pass
        except Exception as exc:  # never a dead thread and a success
            self.stop_destination = True
            self._internal_failure("reading the destination's output", exc)
            _discard(destination.stdout)

    def _destination_line(self, line: bytes) -> None:
        message = parse_message(line)
        if message is None:
            self._not_a_destination_message(line)
            return
        kind = message["type"]
        if kind == "STATE" and isinstance(message.get("state"), dict):
            if state_too_deep(message["state"], raw=line):
                # Not an echo (the source's was checked): a state of its own, which `state set`
                # could not take back; the state committed before it stays.
                why = f"the destination sent a STATE nested more than {MAX_DEPTH} levels deep; it is not kept"
                self._fail(FailureOrigin.DESTINATION, FailureType.SYSTEM_ERROR, why)
                return
            self._commit(message["state"])
        elif kind == "TRACE":
            self.notices.trace(FailureOrigin.DESTINATION, as_object(message.get("trace")), "write")
        elif kind == "LOG":
            self.notices.log_message(DESTINATION, message)
        elif kind == "CONTROL":
            update = to_mount(control_config(message, self.log, DESTINATION), self._local_root(DESTINATION))
            if update is not None:
                self.log.add_secrets(self.ctx.secrets_of(DESTINATION, update))
                self.log.info(DESTINATION, "the destination updated its configuration")
            self.destination_update = update or self.destination_update
        else:
            self.log.info(DESTINATION, f"ignored a {kind} message from the destination")

    def _not_a_destination_message(self, line: bytes) -> None:
        """A line of the destination's that orjson does not read as a message: logged, unless it
        is plainly a STATE (a NaN, a lone surrogate, a number past a double, broken UTF-8). That
        one is not committed, as a state nested too deep is not: the sync fails in one line, the
        state committed before it stays. (A CONTROL or a TRACE error: see Notices.unreadable.)"""
        lenient = _read_leniently(line)
        if lenient is None or lenient.type != "STATE":
            self.notices.unreadable(FailureOrigin.DESTINATION, lenient, line, "write")
            return
        self._fail(FailureOrigin.DESTINATION, FailureType.SYSTEM_ERROR, lenient.failure(DESTINATION))

    def _commit(self, state: dict[str, Any]) -> None:
        state = self.state_names.to_source(state)
        with self._commit_lock:
            self.tracker.destination_state(state)
            try:
                self.states.accept(state)
            except FerrymanError as exc:
                self._fail(FailureOrigin.DESTINATION, FailureType.SYSTEM_ERROR, str(exc))
                return
            self._last_committed = state
        if self.checkpoints.saves_anything:
            # Saved here only when due (the first at once, then by the interval); the commit is
            # made then, not for each state: it grows with the streams, and made per state a
            # source with thousands of streams made the sync quadratic.
            self._save_checkpoint(lambda: self.checkpoints.confirmed(self._latest_commit))
            save_at = self._save_when_committed
            if save_at is not None and self.tracker.states_committed >= save_at:
                # A stream's status changed and every state sent before it is confirmed: the
                # supervisor saves (after a short gap behind the last save, so thousands of streams
                # ending one after another share their saves), and this thread reads on.
                self._save_when_committed = None
                self._flush_asked = True
                self.wake.set()

    def _latest_commit(self) -> StateCommit:
        """The last confirmed state, the state merged over every stream and the streams' stats,
        as of one moment: made when a save takes it, never while a commit is half done."""
        with self._commit_lock:
            return StateCommit(self._last_committed, self.states.snapshot(), self.tracker.snapshot())

    def _status_changed(self) -> None:
        """A stream's status changed (a STREAM_STATUS trace): whatever the interval, the
        supervisor saves the confirmed state now, and again once the destination has confirmed every
        state the source sent before the status (the state that ends a stream is often confirmed
        just after the source said the stream is done); each such save waits a short gap behind
        the one before (``StateCheckpoints.flush_gap_s``)."""
        sent = self.tracker.states_emitted
        if self._save_when_committed is None or sent > self._save_when_committed:
            self._save_when_committed = sent
        self._flush_asked = True
        self.wake.set()

    def _save_checkpoint(self, save: Callable[[], object], last: bool = False) -> None:
        """Save confirmed state as ``save`` does. A save that fails before the last (the store
        does not answer for a while) is logged and tried again at the next one while the sync goes
        on: the state saved is the latest, merged per stream, so one save that succeeds later
        covers every state before it. Only the ``last`` save's failure fails the sync."""
        try:
            saved = save()
        except Exception as exc:
            if last:
                self._fail(FailureOrigin.PERSISTENCE, FailureType.SYSTEM_ERROR, f"saving state failed: {exc}")
            elif self._unsaved_since is None:
                self._unsaved_since = time.monotonic()
                self.log.warn(
                    WORKER,
                    f"saving state failed: {first_line(exc, limit=1000)}; the sync goes on, keeping its"
                    " confirmed state to save when the store answers again",
                )
            return
        if saved and self._unsaved_since is not None:
            away_s = time.monotonic() - self._unsaved_since
            self.log.info(WORKER, f"state saved again after {away_s:.0f}s of failed saves")
            self._unsaved_since = None

    # -- helpers --------------------------------------------------------------------------

    def _fail(self, origin: FailureOrigin, type_: FailureType, message: str) -> None:
        self.log.error(WORKER, f"{origin.value} failure ({type_.value}): {message}")
        self.failures.append(FailureReason.of(origin, type_, message, _now_ms()))

    def _exit_failures(
        self, src: ConnectorLifecycle, dst: ConnectorLifecycle, drains: list[StderrDrain]
    ) -> None:
        if self.cancelled:
            return
        source_start = src.launcher_failure(drains[0].last_lines(), FailureOrigin.SOURCE)
        destination_start = dst.launcher_failure(drains[1].last_lines(), FailureOrigin.DESTINATION)
        for failure in (source_start, destination_start):
            if failure is not None:  # the connector never ran: the reason is the whole story
                self.log.error(
                    WORKER, f"{failure.origin.value} failure ({failure.type.value}): {failure.message}"
                )
                self.failures.append(failure)
        source_why = src.exit_failure()
        if source_why and self._source_stopped_for is None and source_start is None:
            self._fail(FailureOrigin.SOURCE, FailureType.SYSTEM_ERROR, _with_tail(source_why, drains[0]))
        if destination_start is not None:
            return
        destination_why = dst.exit_failure()
        if destination_why is None and (self.destination_gone or self.destination_quit_early):
            destination_why = "the destination exited before the end of its input"
        if destination_why and not self._destination_stopped:
            self._fail(
                FailureOrigin.DESTINATION,
                FailureType.SYSTEM_ERROR,
                _with_tail(destination_why, drains[1]),
            )

    def _finish_alone(self, destination: ConnectorProcess) -> None:
        lifecycle = ConnectorLifecycle(destination, self.ctx.lifecycle, self.log)
        lifecycle.input_ended(time.monotonic())
        reader = threading.Thread(target=self._read_destination, args=(destination,), daemon=True)
        reader.start()
        drain = StderrDrain(destination, self.log, DESTINATION)
        while not lifecycle.tick(time.monotonic()):
            reader.join(_TICK_S)
        reader.join()
        drain.join(5)
        destination.close()

    def _launch_failed(self, origin: FailureOrigin, exc: FerrymanError, started_ms: int) -> SyncOutput:
        # A setting of the user's that cannot work (JOB_MAIN_CONTAINER_CPU_LIMIT=abc) is not retried.
        type_ = FailureType.CONFIG_ERROR if isinstance(exc, UserInputError) else FailureType.SYSTEM_ERROR
        self._fail(origin, type_, str(exc))
        return self._output(started_ms)

    def _output(self, started_ms: int) -> SyncOutput:
        lost = self.log.lost_lines()  # a full disk, most often: the sync must not look whole
        if lost is not None:
            self._fail(FailureOrigin.PLATFORM, FailureType.SYSTEM_ERROR, lost)
        if self.cancelled:
            status = ReplicationStatus.CANCELLED
            self.failures.insert(
                0,
                FailureReason.of(
                    FailureOrigin.PLATFORM,
                    FailureType.MANUAL_CANCELLATION,
                    f"the {'reset' if self.ctx.job_type == 'reset_connection' else 'sync'} was cancelled",
                    _now_ms(),
                ),
            )
        elif self.failures:
            status = ReplicationStatus.FAILED
        else:
            status = ReplicationStatus.COMPLETED
        failures = self.failures if self.cancelled else ordered(self.failures)
        # A destination that exits 0 has written all it got (Airbyte's rule), but only when it
        # also confirmed every checkpoint do we count what followed the last one as committed.
        all_committed = status is ReplicationStatus.COMPLETED and self.tracker.all_states_echoed()
        if status is ReplicationStatus.COMPLETED and not all_committed:
            self.log.warn(
                WORKER,
                f"the destination confirmed {self.tracker.states_committed} of "
                f"{self.tracker.states_emitted} states: the next sync starts from the last one confirmed",
            )
        return SyncOutput(
            status=status,
            streams=self.tracker.snapshot(all_committed=all_committed),
            state=self.states.snapshot(),
            failures=failures,
            started_at_ms=started_ms,
            ended_at_ms=_now_ms(),
            states_emitted=self.tracker.states_emitted,
            states_committed=self.tracker.states_committed,
            source_config_update=self.source_update,
            destination_config_update=self.destination_update,
            worker_cpu_s=self.cpu_s,
            worker_peak_rss_bytes=_peak_rss_bytes(),
        )


def _read_leniently(line: bytes) -> LenientMessage | None:
    """The message a line orjson refused holds, read as Python's json reads it, or None."""
    try:
        return read_leniently(line)
    except RecursionError:
        return None


def _unreadable(who: str, line: bytes, why: str) -> str:
    """The failure for a STATE the strict decoders refused: what is wrong with it when a lenient
    reading tells (a NaN, a lone surrogate, a number past a double), else the decoder's reason."""
    lenient = _read_leniently(line)
    if lenient is None:
        return f"the {who} sent a STATE that cannot be read: {why}"
    return lenient.failure(who, why)


def _abandon(process: ConnectorProcess) -> None:
    """Kill a connector the worker can no longer supervise, and all it left."""
    process.kill()
    process.wait(5)
    process.kill_leftovers()


def _discard(stream: BinaryIO) -> None:
    """Read a stopped source's output to its end, keeping none of it.

    The source is being stopped and nothing it still sends can be delivered, but it must be read:
    a container cannot finish exiting while output of it waits to be read (the engine holds it
    until the attach stream takes it), so a SIGTERMed source would otherwise sit out its grace
    period and be killed."""
    with contextlib.suppress(OSError, ValueError):
        while stream.read(_DISCARD_CHUNK):
            pass


def _peak_rss_bytes() -> int:
    """The worker process's peak resident memory (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _with_tail(message: str, drain: StderrDrain) -> str:
    tail = drain.last_lines()
    return f"{message}; last stderr lines:\n{tail}" if tail else message
