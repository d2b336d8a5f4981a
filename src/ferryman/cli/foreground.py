"""Run a sync or reset job in this process and watch it: progress, Ctrl-C, summary.

The engine runs on a background thread; the main thread polls the store about once a second
for the running attempt's per-stream stats (which the engine saves as the sync goes) and feeds
the progress display. SIGINT/SIGTERM only count in their handler; the main loop turns the first
into a cancel request through the store (whichever engine runs the job stops the connectors:
SIGTERM, grace, SIGKILL) and a later one into a cancel handed to this process's engine directly,
then waits for the job to end.

``run_quietly`` does the same for a job a command runs on the way to its result (the discover
of ``connections create``): Ctrl-C cancels it (connectors stopped, job cancelled, config files
deleted) and the command reports the cancelled job in its one error line.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ferryman.cli.common import SignalCounter, failure_line, note, seconds_between, when
from ferryman.cli.progress import LiveProgress, PlainProgress, from_stream_stats
from ferryman.errors import StoreUnavailable, first_line
from ferryman.jobs.states import AttemptStatus, JobStatus

if TYPE_CHECKING:
    from ferryman.service import JobService
    from ferryman.store.base import Attempt, Job

POLL_S = 1.0  # how often the store is read for progress
SIGNAL_POLL_S = 0.1  # how soon a Ctrl-C or SIGTERM is acted on


@dataclass
class _Outcome:
    job: Job | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _run_in_background(service: JobService, job: Job) -> _Outcome:
    outcome = _Outcome()

    def target() -> None:
        try:
            outcome.job = service.run(job)
        except BaseException as exc:  # re-raised on the main thread
            outcome.error = exc
        finally:
            outcome.done.set()

    threading.Thread(target=target, name=f"job-{job.id}", daemon=True).start()
    return outcome


def run_and_watch(
    service: JobService, job: Job, display: LiveProgress | PlainProgress | None, secrets: list[str]
) -> Job:
    """Run ``job`` here until it is terminal (retries included) and return it as it ended.

    ``secrets``: values to mask in the failures it reports between attempts.
    """
    signals = SignalCounter()
    outcome = _run_in_background(service, job)
    watcher = _Watcher(service, job, display, secrets)
    acted_on = 0
    next_watch = time.monotonic() + POLL_S
    try:
        # Signals are looked at ten times a second, the store once a second: a Ctrl-C in a sync's
        # last second used to wait for the next look, by when the job had ended as if unasked.
        while not outcome.done.wait(SIGNAL_POLL_S):
            if signals.count > acted_on:
                acted_on = signals.count
                _stop(service, job, first=acted_on == 1)
            if time.monotonic() >= next_watch:
                next_watch = time.monotonic() + POLL_S
                watcher.watch()
    finally:
        if display is not None:
            display.close()
        signals.restore()
    if outcome.error is not None:
        raise outcome.error
    assert outcome.job is not None
    return outcome.job


def run_quietly(service: JobService, job: Job) -> Job:
    """Run ``job`` here with no display and no notes; SIGINT/SIGTERM cancel it as in run_and_watch."""
    signals = SignalCounter()
    outcome = _run_in_background(service, job)
    acted_on = 0
    try:
        while not outcome.done.wait(SIGNAL_POLL_S):
            if signals.count > acted_on:
                acted_on = signals.count
                _stop(service, job, first=acted_on == 1, quiet=True)
    finally:
        signals.restore()
    if outcome.error is not None:
        raise outcome.error
    assert outcome.job is not None
    return outcome.job


def _stop(service: JobService, job: Job, first: bool, quiet: bool = False) -> None:
    if first:
        if not quiet:
            note(f"cancelling job {job.id}: stopping the connectors (SIGTERM, grace, SIGKILL)")
        try:
            service.cancel(job.id)
        except StoreUnavailable:  # the request cannot be recorded: this process's engine stops it
            service.stop_now(job.id)
    else:
        if not quiet:
            note(f"cancelling job {job.id} in this process: waiting for the connectors to stop")
        service.stop_now(job.id)


@dataclass
class _Watcher:
    """Feeds the display from the running attempt's stats; says when an attempt failed."""

    service: JobService
    job: Job
    display: LiveProgress | PlainProgress | None
    secrets: list[str]
    reported: set[int] = field(default_factory=set)
    store_away: bool = False  # the last look at the store failed

    def watch(self) -> None:
        """:meth:`poll`, through a store that may not answer for a while: the job runs on (its
        engine keeps the sync's confirmed state until it can save it), so say so once, and
        again when the store answers."""
        try:
            self.poll()
        except StoreUnavailable as exc:
            if not self.store_away:
                self.store_away = True
                saved_later = "its progress is saved when the store answers"
                note(f"{first_line(exc, limit=1000)}; job {self.job.id} goes on, {saved_later}")
            return
        if self.store_away:
            self.store_away = False
            note(f"the store answers again; job {self.job.id} goes on")

    def poll(self) -> None:
        attempts = self.service.store.list_attempts(self.job.id)
        if not attempts:
            return
        attempt = attempts[-1]
        if attempt.status is AttemptStatus.FAILED and attempt.number not in self.reported:
            self.reported.add(attempt.number)
            self._report_retry(attempt)
        elif not attempt.status.terminal and self.display is not None:
            stats = self.service.store.list_stream_stats(attempt.id)
            self.display(from_stream_stats(stats, seconds_between(attempt.created_at, None) or 0.0))

    def _report_retry(self, attempt: Attempt) -> None:
        job = self.service.store.get_job(self.job.id)
        if job.status is not JobStatus.INCOMPLETE:
            return  # the job ends with this attempt: the summary tells
        from ferryman.jobs.outcomes import failure_summary  # msgspec: not at --help

        failures = failure_summary(attempt.failure_summary).failures
        why = failure_line(failures[0].to_dict(), self.secrets, brief=True) if failures else "no reason given"
        when_next = f" at {when(job.next_attempt_at)}" if job.next_attempt_at else ""
        note(f"attempt {attempt.number} failed: {why}; next attempt{when_next}")
