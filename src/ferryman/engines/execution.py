"""One attempt of one stored job: its inputs from the job's config snapshot, its output into the store.

The worker knows nothing of the store; this module is the bridge. The STATEs the destination
echoes are saved with the attempt's per-stream stats, coalesced (workers/checkpoints.py): the
latest at most every ``FERRYMAN_STATE_FLUSH_S`` (1 s), and always when a stream's status changes,
when the engine heartbeats and before the attempt ends. So a crash loses at most that interval
of confirmed progress; the next attempt starts from the last saved state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ferryman.clock import Clock
from ferryman.connectors import ResolvedConnector, parse_reference, resolve
from ferryman.errors import FerrymanError, StoreUnavailable, UserInputError
from ferryman.jobs.configs import VERSION, ActorSnapshot, ConnectorJobConfig, ReplicationConfig
from ferryman.jobs.failures import FailureOrigin, FailureReason, FailureType, ordered
from ferryman.jobs.outcomes import CheckResult, ConnectorOutcome, FailureSummary
from ferryman.jobs.retry import RetryPolicy
from ferryman.jobs.states import AttemptStatus, JobStatus, JobType
from ferryman.launchers import ConnectorProcess, Launcher, LaunchRequest
from ferryman.open_files import describe, is_exhausted
from ferryman.private import secure_home
from ferryman.protocol.catalog import NamespaceDefinition, NamespaceMapping, check_mapping
from ferryman.protocol.state import full_refresh_streams, without_streams
from ferryman.secrets import SecretRules, longest_first, mask_strings, mask_text, secret_values
from ferryman.settings import Settings
from ferryman.store.base import Attempt, Job, JobStore, StreamStat
from ferryman.workers import (
    AttemptContext,
    ConnectorInput,
    ConnectorJobOutput,
    ConnectorJobWorker,
    ReplicationStatus,
    ReplicationWorker,
    StateCommit,
    StreamStats,
    SyncInput,
    SyncOutput,
    SyncProgress,
    files,
    reset_input,
)
from ferryman.workers.attempt_log import AttemptLog
from ferryman.workers.checkpoints import StateCheckpoints
from ferryman.workers.specs import connector_spec

_STATS_EVERY_S = 5.0
# Between two tries at saving an attempt's end in a store that does not answer: 1 s doubling to 30 s.
_STORE_RETRY_FIRST_S, _STORE_RETRY_MAX_S = 1.0, 30.0
_T = TypeVar("_T")


class RecordingLauncher:
    """Passes launches through and tells the store which process groups the attempt started,
    so an engine that restarts after a crash can kill what its predecessor left running."""

    def __init__(self, inner: Launcher, store: JobStore, attempt_id: int) -> None:
        self._inner = inner
        self._store = store
        self._attempt_id = attempt_id
        self._pids: list[int] = []
        self._lock = threading.Lock()

    def launch(self, request: LaunchRequest) -> ConnectorProcess:
        process = self._inner.launch(request)
        with self._lock:
            self._pids.append(process.pid)
            self._store.set_attempt_pids(self._attempt_id, list(self._pids))
        return process


@dataclass
class AttemptExecution:
    store: JobStore
    settings: Settings
    retry: RetryPolicy
    launcher: Launcher
    clock: Clock
    job: Job
    attempt: Attempt
    cancel: threading.Event
    # Set: a store that does not answer when the attempt ends is waited for (1 s doubling to
    # 30 s) until it does or this event is set, and then given the attempt's last confirmed state
    # and its end (a worker's engine). None: the end's write fails at once (a CLI command says so
    # and exits; recovery fails the attempt later).
    give_up: threading.Event | None = None
    # The attempt's secret values, once known: failure text is stored with them masked.
    secrets: list[str] = dataclasses.field(default_factory=list, init=False)
    # What is secret in each side's config: a config a connector updates is masked by the same.
    rules: dict[str, SecretRules] = dataclasses.field(default_factory=dict, init=False)
    # A sync's confirmed states not saved yet (None before a sync starts, and for other jobs).
    checkpoints: StateCheckpoints | None = dataclasses.field(default=None, init=False)
    # The attempt as its outcome ended it (None until then, and when the outcome came late).
    ended: Attempt | None = dataclasses.field(default=None, init=False)
    # Set once the store showed the attempt ended by someone else (see lost()).
    _lost: threading.Event = dataclasses.field(default_factory=threading.Event, init=False)
    # Why the attempt was stopped when it is not a cancel (see stop()), and how the job ends.
    _stopped: tuple[FailureReason, JobStatus] | None = dataclasses.field(default=None, init=False)
    # Set once the job's config in the store was replaced (_apply_config_updates): see _end.
    _config_changed: bool = dataclasses.field(default=False, init=False)

    def run(self) -> Job:
        """Run the attempt to its end and record the outcome; returns the job as it ends up."""
        self._log(
            f"job {self.job.id} ({self.job.type}) attempt {self.attempt.number} "
            f"started by engine {self.attempt.engine_id}"
        )
        job = self._run()
        self._log(f"job {self.job.id} attempt {self.attempt.number} ended: job is {job.status}")
        return job

    def save_state(self) -> bool:
        """Save the sync's last confirmed state now if it is not saved yet (the engine calls
        this when it heartbeats); True if it saved one."""
        checkpoints = self.checkpoints
        return checkpoints is not None and checkpoints.flush()

    def lost(self) -> None:
        """The store shows this attempt ended while it still runs here: another engine failed it
        (this one was cut off from the store longer than the stale limit) and may be running
        the job's next attempt. Its connectors are stopped; nothing more of it is saved."""
        if self._lost.is_set():
            return
        self._lost.set()
        self._log(
            f"attempt {self.attempt.number} is no longer running in the store (another engine "
            "failed it after missing its heartbeats): its connectors are stopped and its state "
            "is not saved, so it cannot replace the state of a newer attempt"
        )
        self.cancel.set()

    def stop(self, failure: FailureReason, job_status: JobStatus) -> None:
        """Stop the connectors as a cancel does, but end the attempt with ``failure`` (first among
        its failures) and the job ``job_status``: nothing is left to run the job's next attempt
        (its Temporal workflow ended outside Ferryman), so no retry is decided."""
        if self._stopped is None:
            self._stopped = (failure, job_status)
            self._log(f"stopping the attempt: {failure.message}")
        self.cancel.set()

    def _log(self, message: str) -> None:
        log = AttemptLog(Path(self.attempt.log_path))  # never raises: a full disk loses the line
        log.info("platform", message)
        log.close()

    def _log_traceback(self, exc: Exception) -> None:
        log = AttemptLog(Path(self.attempt.log_path), self.secrets)
        log.error("platform", "unexpected error in Ferryman (please report it with these lines):")
        for line in "".join(traceback.format_exception(exc)).splitlines():
            log.error("platform", line)
        log.close()

    def _run(self) -> Job:
        try:
            secure_home(self.settings.home)  # the attempt dirs below it hold configs and logs
            if self.job.type.is_replication:
                return self._replicate()
            return self._connector_job()
        except UserInputError as exc:  # a job config that cannot work: never retried
            return self._failed(None, [self._failure(FailureType.CONFIG_ERROR, str(exc))])
        except FerrymanError as exc:
            if self.cancel.is_set():  # the cancel stopped an image pull (or what it came in)
                return self._interrupted(str(exc))
            return self._failed(None, [self._failure(FailureType.SYSTEM_ERROR, str(exc))])
        except OSError as exc:  # the machine said no: most often a full disk
            return self._failed(None, [self._failure(FailureType.SYSTEM_ERROR, _os_error(exc))])
        except Exception as exc:  # a bug of ours: the attempt fails, the engine lives on
            message = f"{type(exc).__name__}: {exc}"
            # Its traceback goes to the attempt's log (never the terminal): what a bug report needs.
            self._log_traceback(exc)
            return self._failed(None, [self._failure(FailureType.SYSTEM_ERROR, message)])
        finally:
            # Config files hold secrets: gone however the attempt ended.
            files.forget_configs(Path(self.attempt.log_path).parent)

    # -- inputs -----------------------------------------------------------------------------

    def _connector(self, actor: ActorSnapshot) -> ResolvedConnector:
        """The connector of a job's actor snapshot (or of a spec job's config), ready to launch."""
        resolved = resolve(parse_reference(actor.connector), self.settings.venvs, self.cancel)
        if actor.resources:
            resolved = dataclasses.replace(resolved, limits=dict(actor.resources))
        return resolved

    def _context(self, secrets: list[str]) -> AttemptContext:
        workdir = Path(self.attempt.log_path).parent
        return AttemptContext(
            str(self.job.id),
            self.attempt.number,
            workdir,
            self.settings.lifecycle,
            secrets,
            job_type=self.job.type.value,
            secret_rules=dict(self.rules),
            local_root=self.settings.local_root,
        )

    def _launcher(self) -> Launcher:
        return RecordingLauncher(self.launcher, self.store, self.attempt.id)

    def _secrets(self, actor: ActorSnapshot, connector: ResolvedConnector, side: str) -> list[str]:
        """The values to mask in the attempt's log, by the spec the actor kept; an actor without
        one (created before specs were kept) gets the spec fetched now, and keeps it."""
        spec = actor.spec
        if spec is None:
            spec = connector_spec(connector, self.launcher, self.settings.workspace, self.settings.lifecycle)
            if spec is not None and actor.actor_id is not None:
                self.store.set_actor_spec(actor.actor_id, actor.connector, spec)
        self.rules[side] = SecretRules.of(spec, actor.config or {})
        return self._remember(side, actor.config or {})

    def _kept_secrets(self, actor: ActorSnapshot, side: str) -> list[str]:
        """The values to mask by the spec the actor kept (by their names without one), for a
        side whose connector does not run."""
        self.rules[side] = SecretRules.of(actor.spec, actor.config or {})
        return self._remember(side, actor.config or {})

    def _remember(self, side: str, config: dict[str, Any] | None) -> list[str]:
        """The secret values of one side's config, masked from now on in what is stored."""
        found = secret_values(config, self.rules.get(side) or SecretRules.of(None, config)) if config else []
        self.secrets = longest_first([*self.secrets, *found])
        return found

    # -- spec, check, discover -------------------------------------------------------------

    def _connector_job(self) -> Job:
        config = ConnectorJobConfig.from_document(self.job.config).actor
        connector = self._connector(config)
        values: dict[str, Any] = config.config or {}
        side = "destination" if self.job.type is JobType.CHECK_DESTINATION else "source"
        ctx = self._context(self._secrets(config, connector, side) if values else [])
        worker = ConnectorJobWorker(self._launcher())
        if self.job.type is JobType.SPEC:
            output = worker.spec(connector, ctx, self.cancel)
        elif self.job.type is JobType.DISCOVER:
            output = worker.discover(ConnectorInput(connector, values), ctx, self.cancel)
        else:
            origin = (
                FailureOrigin.SOURCE if self.job.type is JobType.CHECK_SOURCE else FailureOrigin.DESTINATION
            )
            output = worker.check(ConnectorInput(connector, values), ctx, self.cancel, origin)
        files.forget_configs(ctx.workdir)
        self._remember(side, output.updated_config)  # its new secrets are masked in what is stored
        if output.updated_config is not None and config.actor_id is not None:
            self.store.update_actor_config(config.actor_id, output.updated_config)
        document = _connector_output(output).to_document()
        if self.cancel.is_set():
            return self._cancelled(document, output.failures)
        if output.failures:
            return self._failed(document, output.failures)
        return self._end(AttemptStatus.SUCCEEDED, JobStatus.SUCCEEDED, output=self._masked(document))

    # -- sync and reset --------------------------------------------------------------------

    def _replicate(self) -> Job:
        config = ReplicationConfig.from_document(self.job.config)
        connection_id = config.connection_id
        reset = self.job.type is JobType.RESET
        destination = ConnectorInput(self._connector(config.destination), config.destination.config or {})
        mapping = NamespaceMapping(
            NamespaceDefinition(config.namespace.definition or "source"),
            config.namespace.format,
            config.namespace.prefix or "",
        )
        check_mapping(config.catalog, mapping)  # a connection stored before it was checked
        state = self.store.get_state(connection_id)  # the last committed state, from any attempt
        if self.job.type is JobType.SYNC and self.attempt.number == 0:
            state = self._forget_full_refresh_state(connection_id, config.catalog, state)
        self._log(
            f"starting from the committed state ({len(state)} state message(s))"
            if state
            else "no committed state yet: starting from scratch"
        )
        if reset:
            # A reset runs the empty source, never the configured one: that one is not resolved
            # (no image pulled, no venv installed), so a source that is gone cannot stop a reset.
            sync = reset_input(destination, config.catalog, state, mapping)
            secrets = self._kept_secrets(config.source, "source")
        else:
            source = ConnectorInput(self._connector(config.source), config.source.config or {})
            sync = SyncInput(source, destination, config.catalog, state, mapping)
            secrets = self._secrets(config.source, source.connector, "source")
        sync = dataclasses.replace(sync, sync_id=self.job.id, generation_id=self._generation(connection_id))
        secrets += self._secrets(config.destination, destination.connector, "destination")
        saver = _ProgressSaver(self.store, self.attempt.id, connection_id, self.job.id, self.lost)
        self.checkpoints = StateCheckpoints(saver.commit, self.settings.state_flush_s, self.clock)
        worker = ReplicationWorker(self._launcher())
        output = worker.run(sync, self._context(secrets), self.cancel, saver.progress, self.checkpoints)
        files.forget_configs(Path(self.attempt.log_path).parent)
        self._remember("source", output.source_config_update)
        self._remember("destination", output.destination_config_update)
        self.store.save_progress(self.attempt.id, _stream_stats(self.attempt.id, output.streams))
        self._apply_config_updates(config, output)
        document = {"version": VERSION, **output.to_dict()}  # a ReplicationOutcome document
        if output.status is ReplicationStatus.CANCELLED:
            return self._cancelled(document, output.failures, output.partial_success)
        if output.status is ReplicationStatus.FAILED:
            return self._failed(document, output.failures, output.partial_success)
        return self._end(AttemptStatus.SUCCEEDED, JobStatus.SUCCEEDED, output=self._masked(document))

    def _forget_full_refresh_state(
        self, connection_id: int, catalog: dict[str, Any], state: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """A new job reads its full-refresh streams whole: the state an earlier job left for them
        is dropped from the store, so this job's retries resume from this job's progress only."""
        kept = without_streams(state, full_refresh_streams(catalog))
        if kept != state:
            if not self.store.save_progress(self.attempt.id, [], connection_id, kept, self.job.id):
                self.lost()
            self._log("the full-refresh streams start from scratch: their state from earlier jobs is dropped")
        return kept

    def _generation(self, connection_id: int) -> int:
        """The generation of the connection's data in the destination: how many of its resets
        succeeded, this job included when it is one (each reset starts a new generation)."""
        resets = self.store.list_jobs(
            scope=str(connection_id), status=JobStatus.SUCCEEDED, type=JobType.RESET, limit=1 << 30
        )
        return len(resets) + (1 if self.job.type is JobType.RESET else 0)

    def _apply_config_updates(self, config: ReplicationConfig, output: SyncOutput) -> None:
        """A config a connector handed back (CONTROL: a rotated credential, say) replaces its
        actor's, and its side of the job's snapshot: the old one may not work any more, so the
        job's next attempt runs the new one (as Airbyte reads each attempt's config afresh)."""
        updates = {"source": output.source_config_update, "destination": output.destination_config_update}
        sides: dict[str, ActorSnapshot] = {}
        for side, actor in (("source", config.source), ("destination", config.destination)):
            update = updates[side]
            if update is not None:
                if actor.actor_id is not None:
                    self.store.update_actor_config(actor.actor_id, update)
                sides[side] = msgspec.structs.replace(actor, config=update)
        if sides:
            self.store.set_job_config(self.job.id, msgspec.structs.replace(config, **sides).to_document())
            self._config_changed = True

    # -- outcomes ---------------------------------------------------------------------------

    def _failure(self, type_: FailureType, message: str) -> FailureReason:
        return FailureReason.of(FailureOrigin.PLATFORM, type_, message, int(time.time() * 1000))

    def _summary(self, failures: list[FailureReason], partial: bool | None) -> dict[str, Any]:
        summary: dict[str, Any] = self._masked(
            FailureSummary(failures=failures, partial_success=partial).to_document()
        )
        return summary

    def _masked(self, document: Any) -> Any:
        """A document to store, every string in it masked: a connector can put its config's secret
        in an error message or stack trace, and the store keeps what it is given for good."""
        return mask_strings(document, self.secrets)

    def _cancelled(
        self, output: dict[str, Any] | None, failures: list[FailureReason], partial: bool | None = None
    ) -> Job:
        if self._stopped is not None:
            return self._ended_by_stop(output, failures, partial)
        summary = self._summary(failures, partial)
        return self._end(
            AttemptStatus.FAILED, JobStatus.CANCELLED, output=self._masked(output), failure_summary=summary
        )

    def _interrupted(self, error: str) -> Job:
        """Cancelled before the connectors ran: what failed then (a pull the same Ctrl-C ended)
        is the cancel's doing, logged, not reported as the attempt's failure."""
        self._log(f"cancelled while getting the connectors ready ({mask_text(error, self.secrets)})")
        what = "reset" if self.job.type is JobType.RESET else self.job.type.value.split("_")[0]
        return self._cancelled(
            None, [self._failure(FailureType.MANUAL_CANCELLATION, f"the {what} was cancelled")]
        )

    def _failed(
        self, output: dict[str, Any] | None, failures: list[FailureReason], partial: bool | None = None
    ) -> Job:
        if self._stopped is not None:  # a connector that failed as it was stopped: the stop says why
            return self._ended_by_stop(output, failures, partial)
        failures = ordered(failures)
        now = self.clock.now()
        summary = self._summary(failures, partial)
        output = self._masked(output)
        job = self._end(
            AttemptStatus.FAILED, JobStatus.INCOMPLETE, now, output=output, failure_summary=summary
        )
        if self.ended is None:  # the attempt had ended already: whoever ended it decided
            return job
        return self._stored(
            lambda: decide_retry(self.store, self.retry, job, self.attempt.number + 1, failures, now)
        )

    def _ended_by_stop(
        self, output: dict[str, Any] | None, failures: list[FailureReason], partial: bool | None
    ) -> Job:
        """The attempt failed and the job ended as ``stop()`` said; the stop's failure goes first,
        before what the connectors reported (the cancel's own reason, which the stop is not, left out)."""
        assert self._stopped is not None
        failure, job_status = self._stopped
        kept = [f for f in failures if f.type is not FailureType.MANUAL_CANCELLATION]
        summary = self._summary([failure, *ordered(kept)], partial)
        return self._end(
            AttemptStatus.FAILED, job_status, output=self._masked(output), failure_summary=summary
        )

    def _end(
        self, status: AttemptStatus, job_status: JobStatus, now: datetime | None = None, **values: Any
    ) -> Job:
        """Save the attempt's outcome (``store.end_attempt``); keep the attempt as it ended, so
        whoever reports the end need not read it back."""
        # The job's config is the one this attempt read as it started, unless a connector's config
        # update replaced it: it is not decoded from the store once more (a sync's config is its
        # whole catalog, megabytes for thousands of streams).
        read = self._config_changed
        job, self.ended = self._stored(
            lambda: self.store.end_attempt(
                self.attempt, status, job_status, now or self.clock.now(), read_config=read, **values
            )
        )
        return job if read else dataclasses.replace(job, config=self.job.config)

    def _stored(self, write: Callable[[], _T]) -> _T:
        """``write`` to the store; with ``give_up``, tried again while the store does not answer,
        each time after saving the last confirmed state the sync could not save (the store
        takes it only while this attempt is still running there: once another engine has failed
        it, a newer attempt's state may be there)."""
        delay = _STORE_RETRY_FIRST_S
        retrying = False
        while True:
            try:
                if retrying:
                    self.save_state()
                return write()
            except StoreUnavailable as exc:
                if self.give_up is None or self.give_up.is_set():
                    raise
                reason = str(exc).strip().splitlines()[0][:300]
                self._log(f"the end of the attempt could not be saved: {reason}; trying again in {delay:g}s")
                if self.give_up.wait(delay):
                    raise
                delay, retrying = min(delay * 2, _STORE_RETRY_MAX_S), True


def _os_error(exc: OSError) -> str:
    """``no space left on device while writing /path``: what failed, and where."""
    if is_exhausted(exc):  # not a disk's fault: the limit of open files, and how to raise it
        return describe(exc)
    what = (exc.strerror or str(exc)).lower()
    if not exc.filename:
        return what
    writing = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
    return f"{what} {'while writing' if writing else 'at'} {exc.filename}"


def decide_retry(
    store: JobStore,
    retry: RetryPolicy,
    job: Job,
    attempts_done: int,
    failures: list[FailureReason],
    now: datetime,
) -> Job:
    """After a failed attempt: schedule the next one after its backoff, or fail the job. The
    backoff is counted by the store's clock, not ``now`` (this host's), so the engine that
    claims the retry, whatever its own clock says, waits exactly as long.

    Only for a job the failed attempt left incomplete: if the outcome came late (the job was
    cancelled, or already retried by another engine), there is nothing to decide. Both writes
    move the job only while it is still incomplete, so a decision taken on a read that another
    engine's claim has overtaken never touches the newer attempt's job."""
    if job.status is not JobStatus.INCOMPLETE:
        return job
    if retry.should_retry(job.type, attempts_done, failures):
        return store.schedule_retry(job.id, retry.backoff_s(attempts_done))
    return store.fail_waiting_job(job.id, now) or store.get_job(job.id)


class _ProgressSaver:
    """Saves a commit (state + stats) when the checkpoints hand one over, and stats every few
    seconds; ``lost`` when the store refuses them because the attempt ended there."""

    def __init__(
        self, store: JobStore, attempt_id: int, connection_id: int, job_id: int, lost: Callable[[], None]
    ) -> None:
        self.store = store
        self.attempt_id = attempt_id
        self.connection_id = connection_id
        self.job_id = job_id
        self.lost = lost
        self._next_stats = 0.0
        self._saved: dict[tuple[str, str | None], tuple[int | None, ...]] = {}  # the store's figures

    def commit(self, commit: StateCommit) -> None:
        stats = self._changed(commit.streams)
        if not self.store.save_progress(
            self.attempt_id, stats, self.connection_id, commit.aggregated, self.job_id
        ):
            self.lost()
        self._remember(stats)

    def progress(self, progress: SyncProgress) -> None:
        """Running counts, every few seconds; a store that does not answer skips them (the state
        saves say so in the attempt's log, and the attempt's end saves the final counts)."""
        now = time.monotonic()
        if now >= self._next_stats:
            self._next_stats = now + _STATS_EVERY_S
            stats = self._changed(progress.streams)
            with contextlib.suppress(StoreUnavailable):
                if not self.store.save_progress(self.attempt_id, stats):
                    self.lost()
                self._remember(stats)

    def _changed(self, streams: list[StreamStats]) -> list[StreamStat]:
        """The stats of the streams whose figures differ from what the store holds: a save writes
        what changed, not a row per stream (a source with thousands of streams reads one at a
        time, and every save wrote them all)."""
        return _stream_stats(self.attempt_id, [s for s in streams if self._saved.get(_key(s)) != _figures(s)])

    def _remember(self, stats: list[StreamStat]) -> None:
        """Only after the store took them: a save that raised is made again whole."""
        for stat in stats:
            self._saved[(stat.name, stat.namespace)] = _figures(stat)


def _key(stats: StreamStats) -> tuple[str, str | None]:
    return stats.name, stats.namespace


def _figures(stats: StreamStats | StreamStat) -> tuple[int | None, ...]:
    return (
        stats.records_emitted,
        stats.bytes_emitted,
        stats.records_committed,
        stats.bytes_committed,
        stats.estimated_records,
        stats.estimated_bytes,
    )


def _stream_stats(attempt_id: int, streams: list[StreamStats]) -> list[StreamStat]:
    saved = []
    for stream in streams:
        figures = stream.to_dict()
        del figures["status"]  # the store keeps counts; the status is the worker's
        saved.append(StreamStat(attempt_id, **figures))
    return saved


def _connector_output(output: ConnectorJobOutput) -> ConnectorOutcome:
    check = None
    if output.check_succeeded is not None:
        check = CheckResult(
            status="succeeded" if output.check_succeeded else "failed", message=output.check_message
        )
    return ConnectorOutcome(
        exit_code=output.exit_code,
        spec=output.spec,
        check=check,
        catalog=output.catalog,
        config_updated=output.updated_config is not None,
    )
