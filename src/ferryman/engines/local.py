"""The local engine: claims jobs from the store and runs their attempts on threads of this process.

Several engine processes may share one store (Postgres, or SQLite on one host): claims are
atomic, each engine heartbeats the attempts it runs, and any engine fails and retries the attempts
of an engine that stopped heartbeating, killing on its own host the connectors that engine left.
An engine on this host whose process is gone (say, a foreground `connections sync` killed with
SIGKILL) is recovered at once, without waiting for its heartbeat to go stale.

    engine = LocalEngine(store)
    engine.tick()                      # one pass: recover, heartbeat, cancel, claim and start
    engine.run(stop_event)             # `ferryman worker`: tick until stopped, then drain
    engine.run_jobs([job_id])          # the CLI's in-process mode: only these jobs, until they end
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from ferryman.clock import Clock, SystemClock
from ferryman.connectors.docker import DockerUnavailable
from ferryman.engines.base import AttemptObserver
from ferryman.engines.execution import AttemptExecution, decide_retry
from ferryman.engines.limits import worker_limits
from ferryman.errors import StoreUnavailable, UserInputError, WorkerError, first_line
from ferryman.jobs.failures import FailureOrigin, FailureReason, FailureType
from ferryman.jobs.outcomes import FailureSummary
from ferryman.jobs.retry import RetryPolicy
from ferryman.jobs.states import AttemptStatus, JobStatus, JobType
from ferryman.launchers import ConnectorLauncher, Launcher
from ferryman.launchers.docker import LABEL, list_containers, remove_containers, remove_orphans
from ferryman.settings import Settings
from ferryman.store.base import Attempt, Job, JobStore, NotFound
from ferryman.store.waiting import Backoff
from ferryman.workers import files
from ferryman.workers.attempt_log import recover_tail

# How often an engine looks for containers nobody will stop (and at its first pass).
_SWEEP_EVERY_S = 60.0
# The mark of an engine that runs only the jobs of one CLI command (``run_jobs``).
FOREGROUND = "fg"


log = logging.getLogger(__name__)


@dataclass
class _Running:
    job: Job
    attempt: Attempt
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    error: BaseException | None = None  # the attempt's end could not be saved
    ended: Job | None = None  # the job as the attempt's saved outcome left it
    execution: AttemptExecution | None = None


def new_engine_id(foreground: bool = False) -> str:
    """``host:pid:token``, and ``:fg`` for a command's own engine: its jobs have no one else to
    run their retries, which recovery needs to know."""
    engine_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
    return f"{engine_id}:{FOREGROUND}" if foreground else engine_id


class LocalEngine:
    """Implements :class:`ferryman.engines.base.WorkerEngine` with threads of this process."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings | None = None,
        retry: RetryPolicy | None = None,
        limits: dict[str, int] | None = None,
        launcher: Launcher | None = None,
        clock: Clock | None = None,
        engine_id: str | None = None,
        foreground: bool = False,
        heartbeat_interval_s: float | None = None,
        stale_after_s: float | None = None,
        poll_interval_s: float = 0.5,
    ) -> None:
        self.store = store
        self.settings = settings or Settings.from_env()
        self.retry = retry or RetryPolicy.from_env(os.environ)
        self.limits = limits or worker_limits(os.environ)
        # Containers carry the store they work for, so an engine only judges its own store's.
        self.store_label = hashlib.sha256(store.url.encode()).hexdigest()[:12]
        self.launcher = launcher or ConnectorLauncher(labels={f"{LABEL}.store": self.store_label})
        self.clock = clock or SystemClock()
        self.engine_id = engine_id or new_engine_id(foreground)
        self.heartbeat_interval_s = heartbeat_interval_s or _seconds("FERRYMAN_ENGINE_HEARTBEAT_S", 10.0)
        # An attempt whose engine has not heartbeaten for this long (by the store's clock: hosts'
        # clocks may disagree by more than this) is failed and retried.
        self.stale_after_s = stale_after_s or _seconds("FERRYMAN_ENGINE_STALE_AFTER_S", 60.0)
        self.poll_interval_s = poll_interval_s
        self._running: dict[int, _Running] = {}
        self._unsaved: dict[int, _Running] = {}  # by job id: attempts whose end was not saved
        # By job id: the jobs run_jobs waits for, each with the terminal job an attempt here left
        # (None until then), so that its config, a sync's whole catalog, is not read once more.
        self._awaited: dict[int, Job | None] = {}
        self._lock = threading.Lock()
        self._next_heartbeat = 0.0
        self._next_sweep = 0.0  # the first recover pass sweeps containers
        self._sweeping: threading.Thread | None = None
        self._wake = threading.Event()
        # A worker's attempts wait for a store that is away to save their end (until cancel_all);
        # a command's own engine says at once that it could not (run_jobs).
        self._give_up: threading.Event | None = None if foreground else threading.Event()
        self.observer: AttemptObserver | None = None

    # -- one pass ---------------------------------------------------------------------------

    def tick(self, only: Collection[int] | None = None, claim: bool = True) -> int:
        """Recover dead engines' attempts, heartbeat, claim and start jobs, pass on cancels.

        Returns how many attempts it started. ``only`` limits claims to those job ids. The
        claim comes before the cancels' query: a slot an attempt freed is filled a round trip
        sooner (a claim never takes a job whose cancel was asked for).
        """
        self._reap()
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_interval_s
            beating = self.running_attempt_ids()
            renewed = self.store.heartbeat(self.engine_id, beating)
            self._stop_lost(set(beating) - renewed)
            self.save_states()
            self.recover()
        claimed = []
        if claim:
            claimed = self.store.claim(
                self.engine_id, self.free_slots(), self.clock.now(), self.log_path, only
            )
        for job, attempt in claimed:
            self._start(job, attempt)
        self._pass_on_cancels()
        return len(claimed)

    def save_states(self, job_id: int | None = None) -> None:
        """Save the last confirmed state of the syncs running here (or of one job's) that is not
        saved yet: with each heartbeat, so the store never lags a heartbeat behind the sync.
        A failure is the attempt's to report (it tries again), never the engine's."""
        with self._lock:
            running = [r for r in self._running.values() if job_id is None or r.job.id == job_id]
        for item in running:
            if item.execution is not None:
                try:
                    item.execution.save_state()
                except (StoreUnavailable, OperationalError, NotFound) as exc:  # expected: one line
                    log.warning("saving the state of job %s failed: %s", item.job.id, first_line(exc))
                except Exception:
                    log.warning("saving the state of job %s failed", item.job.id, exc_info=True)

    def _stop_lost(self, attempt_ids: set[int]) -> None:
        """Stop the attempts running here that the store shows ended though they never ended
        here: another engine failed them (this one missed heartbeats: a network cut, a stalled
        process) and may be running their job's next attempt."""
        with self._lock:
            lost = [self._running[key] for key in attempt_ids if key in self._running]
        for item in lost:
            execution = item.execution
            if execution is not None and execution.ended is None and not item.cancel.is_set():
                log.warning(
                    "attempt %s of job %s was failed by another engine: stopping it here",
                    item.attempt.number,
                    item.job.id,
                )
                execution.lost()

    def free_slots(self) -> dict[str, int]:
        with self._lock:
            busy = [r.job.type.slot for r in self._running.values()]
        return {slot: limit - busy.count(slot) for slot, limit in self.limits.items()}

    def running_attempt_ids(self) -> list[int]:
        with self._lock:
            return list(self._running)

    def log_path(self, job_id: int, attempt_number: int) -> str:
        return str(self.settings.workspace / str(job_id) / str(attempt_number) / files.LOG_FILE)

    def submit(self, job: Job) -> None:
        """A job was queued by this process (the server's API): claim it now, not at the next
        poll. Jobs queued by other processes are found at the next poll or attempt end."""
        self._wake.set()

    def enqueue_and_start(self, type: JobType, scope: str, config: dict[str, Any]) -> Job:
        """Queue a job already claimed by this engine and start its first attempt (see
        ``JobStore.enqueue_running``): what a command that runs its own job does."""
        job, attempt = self.store.enqueue_running(
            type, scope, config, self.engine_id, self.clock.now(), self.log_path, require_connection=True
        )
        self._start(job, attempt)
        return job

    def start(self, job: Job, attempt: Attempt) -> threading.Thread:
        """Run an attempt claimed elsewhere (a Temporal activity) as one of this engine's own:
        heartbeaten, cancelled through the store, reported to the observer. Returns its thread."""
        return self._start(job, attempt)

    def _start(self, job: Job, attempt: Attempt) -> threading.Thread:
        running = _Running(job, attempt)
        execution = AttemptExecution(
            self.store,
            self.settings,
            self.retry,
            self.launcher,
            self.clock,
            job,
            attempt,
            running.cancel,
            self._give_up,
        )
        running.execution = execution

        def run() -> None:
            try:
                running.ended = execution.run()
            except BaseException as exc:  # the store refused the outcome: run_jobs reports it
                running.error = exc
            finally:
                self._wake.set()

        running.thread = threading.Thread(target=run, name=f"job-{job.id}-{attempt.number}", daemon=True)
        with self._lock:
            self._running[attempt.id] = running
        running.thread.start()
        self._observe(lambda observer: observer.started(job, attempt))
        return running.thread

    def _reap(self) -> None:
        with self._lock:
            # A thread not started yet (ident None) is not done: start() registers an attempt and
            # then starts its thread, and a Temporal activity calls it while the worker's store
            # thread reaps. Taken for ended, the attempt ran on unknown to this engine: never
            # heartbeaten in the store, and no cancel passed on to it.
            done = [
                key
                for key, r in self._running.items()
                if r.thread and r.thread.ident is not None and not r.thread.is_alive()
            ]
            reaped = [self._running.pop(key) for key in done]
            for ended in reaped:
                if ended.error is not None:
                    self._unsaved[ended.job.id] = ended
                elif ended.job.id in self._awaited and ended.ended and ended.ended.status.terminal:
                    self._awaited[ended.job.id] = ended.ended  # a terminal job's row changes no more
        if self.observer is not None:
            for ended in reaped:
                if ended.error is None:
                    self._observe_end(ended)

    def _observe_end(self, ended: _Running) -> None:
        job_id, attempt_id = ended.job.id, ended.attempt.id

        def tell(observer: AttemptObserver) -> None:
            # As the outcome's write returned it; read only when that write found it ended.
            attempt = ended.execution.ended if ended.execution is not None else None
            if attempt is None:
                attempt = next(a for a in self.store.list_attempts(job_id) if a.id == attempt_id)
            observer.ended(ended.ended or self.store.get_job(job_id), attempt)

        self._observe(tell)

    def _observe(self, call: Callable[[AttemptObserver], None]) -> None:
        """An observer that fails (a closed stdout, a store read refused) never stops the engine."""
        if self.observer is None:
            return
        try:
            call(self.observer)
        except Exception:
            log.exception("the attempt observer failed")

    def _pass_on_cancels(self) -> None:
        with self._lock:
            running = [item for item in self._running.values() if not item.cancel.is_set()]
        if not running:
            return
        asked = self.store.cancel_requested([item.job.id for item in running])
        for item in running:
            if item.job.id in asked:
                item.cancel.set()

    # -- crash recovery ---------------------------------------------------------------------

    def recover(self, sweep: bool = True) -> list[Attempt]:
        """Fail attempts whose engine is gone; returns those attempts.

        Gone means: no heartbeat for ``stale_after_s``, or (at once) an engine of this host whose
        process no longer exists. Their connectors on this host are killed and their config files
        deleted. A worker's job is retried under the retry rules; a foreground job is failed, as
        the command that would have run its retries is gone too. ``sweep`` also removes containers
        nobody will stop (see remove_orphan_containers), at most once a minute."""
        now = self.clock.now()
        recovered = []
        for attempt, why in self._abandoned():
            self.fail_abandoned(attempt, why)
            recovered.append(attempt)
        recovered.extend(self._fail_orphaned_retries(now))
        if sweep and (recovered or time.monotonic() >= self._next_sweep):
            self._next_sweep = time.monotonic() + _SWEEP_EVERY_S
            self._sweep_beside()
        return recovered

    def _sweep_beside(self) -> None:
        """Sweep containers in a thread of its own: asking Docker takes 10-50 ms (more when its
        daemon is busy), which a foreground command would otherwise spend before its first
        connector starts. Not a daemon thread, so the process still waits for it before it ends,
        and run_jobs waits for it before it returns."""
        if self._sweeping is not None and self._sweeping.is_alive():
            return

        def sweep() -> None:
            try:
                self.remove_orphan_containers()
            except Exception:  # a store read refused: the next sweep, a minute on, tries again
                log.warning("the sweep of orphaned containers failed", exc_info=True)

        self._sweeping = threading.Thread(target=sweep, name="container-sweep")
        self._sweeping.start()

    def wait_for_sweep(self) -> None:
        sweeping = self._sweeping
        if sweeping is not None:
            sweeping.join()

    def fail_abandoned(self, attempt: Attempt, why: str) -> Job:
        """Fail a running attempt whose engine is gone: its leftovers on this host killed, its
        config files deleted, and the job retried by the rules (a foreground one failed)."""
        now = self.clock.now()
        self._kill_leftovers(attempt)
        files.forget_configs(Path(attempt.log_path).parent)
        # Past its size limit, the log's last connector lines were only in the dead worker's
        # memory and in the file beside the log: they tell why the job died, keep them.
        with contextlib.suppress(OSError):
            recover_tail(Path(attempt.log_path))
        failure = FailureReason.of(
            FailureOrigin.PLATFORM, FailureType.SYSTEM_ERROR, why, int(time.time() * 1000)
        )
        summary = FailureSummary(failures=[failure]).to_document()
        job, ended = self.store.end_attempt(
            attempt, AttemptStatus.FAILED, JobStatus.INCOMPLETE, now, failure_summary=summary
        )
        if ended is None:  # another engine recovered it first, or it ended on its own: theirs to decide
            return job
        if _is_foreground(attempt.engine_id):
            return self.store.fail_waiting_job(job.id, now) or self.store.get_job(job.id)
        return decide_retry(self.store, self.retry, job, attempt.number + 1, [failure], now)

    def engine_gone(self, attempt: Attempt) -> bool:
        """Whether the engine running this attempt is gone, by the rules of ``recover``: its
        process dead on this host, or its store heartbeat stale; this engine, when it no longer
        runs the attempt. False while it lives, however Temporal sees it."""
        if attempt.engine_id == self.engine_id:
            return attempt.id not in self.running_attempt_ids()
        if _local_process_gone(attempt.engine_id):
            return True
        return any(stale.id == attempt.id for stale in self.store.stale_attempts(self.stale_after_s))

    def _fail_orphaned_retries(self, now: datetime) -> list[Attempt]:
        """Fail the incomplete jobs whose retries a command of this host would have run, had its
        process not died between two attempts (the connection stays busy until the job ends).
        Returns their last attempts, failed already."""
        orphaned = []
        for attempt in self.store.waiting_attempts():
            engine_id = attempt.engine_id
            if engine_id == self.engine_id or not _is_foreground(engine_id):
                continue
            if _local_process_gone(engine_id) and self.store.fail_waiting_job(attempt.job_id, now):
                orphaned.append(attempt)
        return orphaned

    def _abandoned(self) -> list[tuple[Attempt, str]]:
        """Running attempts of other engines that are gone, each with why we think so. Stale by
        the store's clock, never this host's (see ``JobStore.stale_attempts``)."""
        stale = {a.id for a in self.store.stale_attempts(self.stale_after_s)}
        found = []
        for attempt in self.store.running_attempts():
            if attempt.engine_id == self.engine_id:
                continue
            if _local_process_gone(attempt.engine_id):
                found.append((attempt, f"the process running this attempt ({attempt.engine_id}) is gone"))
            elif attempt.id in stale:
                found.append(
                    (attempt, f"the engine running this attempt ({attempt.engine_id}) stopped heartbeating")
                )
        return found

    def remove_orphan_containers(self) -> list[str]:
        """Remove containers that no one will stop: their attempt in this store is over, or the
        process that started them (say, a crashed ad-hoc run) is gone. Returns their names."""
        if shutil.which("docker") is None:
            return []

        def attempt_running(labels: dict[str, str]) -> bool | None:
            job_id, number = labels.get(f"{LABEL}.job-id", ""), labels.get(f"{LABEL}.attempt", "")
            if labels.get(f"{LABEL}.store") != self.store_label or not job_id.isdigit():
                return None
            attempts = {str(a.number): a for a in self.store.list_attempts(int(job_id))}
            attempt = attempts.get(number)
            return attempt is not None and attempt.status is AttemptStatus.RUNNING

        try:
            return remove_orphans(attempt_running)
        except DockerUnavailable:
            return []  # no engine, so no container of ours is running either

    def _kill_leftovers(self, attempt: Attempt) -> None:
        """Remove a dead engine's containers, and kill the process groups it left on this host."""
        if shutil.which("docker") is not None:
            labels = [
                f"{LABEL}.store={self.store_label}",
                f"{LABEL}.job-id={attempt.job_id}",
                f"{LABEL}.attempt={attempt.number}",
            ]
            with contextlib.suppress(DockerUnavailable):
                remove_containers(name for name, _ in list_containers(labels))
        if not attempt.engine_id or attempt.engine_id.split(":")[0] != socket.gethostname():
            return
        for pid in attempt.pids:
            if _belongs_to(pid, attempt):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

    # -- loops ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set, then stop claiming and let running attempts finish.

        A store that cannot be reached (a database restarted, a network cut) does not end the
        loop: the observer hears of it once per try, and the engine tries again after 1 s,
        doubling to 30 s, until the store answers."""
        backoff = Backoff()
        # The wake-up is cleared before each pass, never after the wait: a submit or an attempt's
        # end that sets it during the pass (or between the wait and a clear) is not lost, which
        # left a job queued here waiting for the next poll.
        while not stop.is_set():
            self._wake.clear()
            if self._tick_or_back_off(backoff, stop, claim=True):
                self._wake.wait(self.poll_interval_s)
        while self.running_attempt_ids():
            self._wake.clear()
            # The pass reaps the attempts that ended: the last one ends the loop without a wait.
            if self._tick_or_back_off(backoff, self._wake, claim=False) and self.running_attempt_ids():
                self._wake.wait(self.poll_interval_s)

    def _tick_or_back_off(self, backoff: Backoff, interrupt: threading.Event, claim: bool) -> bool:
        """One tick; False after waiting out a store that failed it (``interrupt`` cuts the wait)."""
        try:
            self.tick(claim=claim)
        except (StoreUnavailable, OperationalError) as exc:
            delay = backoff.next_s()
            reason = first_line(exc, limit=10_000)
            log.warning("store unavailable, retrying in %.0fs: %s", delay, reason)
            self._observe(lambda observer: observer.store_unavailable(reason, delay))
            interrupt.wait(delay)
            return False
        backoff.reset()
        return True

    def run_jobs(self, job_ids: Collection[int], timeout_s: float | None = None) -> list[Job]:
        """Run these jobs (and their retries) in this process until each is terminal. A job that
        an attempt here ended comes back as that attempt's end left it, not read again."""
        with self._lock:
            for job_id in job_ids:
                self._awaited.setdefault(job_id, None)
        try:
            return self._run_jobs(job_ids, timeout_s)
        finally:
            with self._lock:
                for job_id in job_ids:
                    self._awaited.pop(job_id, None)

    def _job_now(self, job_id: int, catalog: bool = True) -> Job:
        with self._lock:
            ended = self._awaited.get(job_id)
        return ended or self.store.get_job(job_id, catalog=catalog)

    def _run_jobs(self, job_ids: Collection[int], timeout_s: float | None) -> list[Job]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        backoff = Backoff()
        while True:
            pause = self.poll_interval_s
            self._wake.clear()  # before the pass (see run)
            try:
                # While each of them runs here there is nothing to claim and none can be over: a
                # pass only heartbeats and looks for cancels (an attempt's end wakes the loop).
                self.tick(only=job_ids, claim=not self._all_running(job_ids))
                self._raise_unsaved(job_ids)
                if not self._all_running(job_ids):
                    # Each pass looks at their statuses only: a sync's config holds its catalog,
                    # megabytes at thousands of streams, read whole once, when it is returned.
                    jobs = [self._job_now(job_id, catalog=False) for job_id in job_ids]
                    if all(job.status.terminal for job in jobs) and not self.running_attempt_ids():
                        self.wait_for_sweep()
                        return [self._job_now(job_id) for job_id in job_ids]
                backoff.reset()
            except (StoreUnavailable, OperationalError) as exc:
                # The attempts running here go on (they keep their confirmed state until the store
                # answers); one that ends meanwhile cannot save its end, which _raise_unsaved says.
                self._raise_unsaved(job_ids)
                if not self.running_attempt_ids():
                    raise
                pause = backoff.next_s()
                log.info("store unavailable, retrying in %.0fs: %s", pause, first_line(exc, limit=10_000))
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"jobs {list(job_ids)} still running after {timeout_s}s")
            self._wake.wait(pause)

    def _all_running(self, job_ids: Collection[int]) -> bool:
        with self._lock:
            return set(job_ids) <= {item.job.id for item in self._running.values()}

    def _raise_unsaved(self, job_ids: Collection[int]) -> None:
        """An attempt of these jobs ended but the store took no outcome: waiting would be for
        ever, so say it (the job is recovered later, as one whose engine is gone)."""
        for job_id in job_ids:
            ended = self._unsaved.pop(job_id, None)
            if ended is not None:
                cause = str(ended.error).strip().splitlines()[0] if str(ended.error).strip() else ""
                raise WorkerError(
                    f"job {job_id}: the end of attempt {ended.attempt.number} could not be saved "
                    f"({type(ended.error).__name__}: {cause[:300]})"
                )

    def cancel(self, job_id: int) -> None:
        """Stop the job's running attempt here at once (its cancel request is the store's)."""
        with self._lock:
            for item in self._running.values():
                if item.job.id == job_id:
                    item.cancel.set()

    def stop(self, job_id: int, failure: FailureReason, job_status: JobStatus) -> None:
        """Stop the job's running attempt here as a cancel would, but end it with ``failure`` and
        the job ``job_status`` (see AttemptExecution.stop)."""
        with self._lock:
            running = [item for item in self._running.values() if item.job.id == job_id]
        for item in running:
            if item.execution is not None:
                item.execution.stop(failure, job_status)

    def cancel_all(self) -> None:
        """Stop every running attempt's connectors (used when the process must exit); an
        attempt waiting for the store to save its end stops waiting (recovery fails it later)."""
        if self._give_up is not None:
            self._give_up.set()
        with self._lock:
            for item in self._running.values():
                item.cancel.set()


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UserInputError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:  # "inf", "nan" and 0 would never beat or never age
        raise UserInputError(f"{name} must be a finite number of seconds above 0, got {raw!r}")
    return value


def _belongs_to(pid: int, attempt: Attempt) -> bool:
    """Only a process that carries this attempt's job metadata: a reused pid is left alone."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            environ = handle.read().split(b"\0")
    except OSError:
        return False
    return (
        f"WORKER_JOB_ID={attempt.job_id}".encode() in environ
        and f"WORKER_JOB_ATTEMPT={attempt.number}".encode() in environ
    )


def _is_foreground(engine_id: str | None) -> bool:
    return bool(engine_id) and str(engine_id).endswith(f":{FOREGROUND}")


def _local_process_gone(engine_id: str | None) -> bool:
    """True only when the engine ran on this host and its process is dead (or a zombie).

    A reused pid makes this say False: the attempt then waits for the stale heartbeat, as an
    engine on another host does. Never True for a live engine."""
    host, _, rest = (engine_id or "").partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    if not os.path.isdir("/proc/self"):  # not Linux: ask the kernel whether the pid exists
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    try:
        with open(f"/proc/{pid_text}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        return False
    return state in (b"Z", b"X")  # a zombie: dead, only not yet reaped by its parent
