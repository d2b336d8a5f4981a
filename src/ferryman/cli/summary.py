"""A job as people and scripts see it: its attempts, failures and per-stream stats.

``jobs show`` prints every attempt; a sync run in the foreground prints the short summary.
Both print the same JSON document, with the job's secret values masked in every string.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ferryman.cli.common import (
    duration,
    failure_line,
    note,
    out,
    print_failure,
    print_json,
    reader_gone,
    say,
    when,
)
from ferryman.jobs.states import JobStatus

if TYPE_CHECKING:
    from ferryman.service import JobService
    from ferryman.store.base import Job


def print_outcome(service: JobService, job: Job, json: bool) -> int:
    """The summary of a finished job; its exit code: 0 succeeded, 1 anything else."""
    # The summary shows no output: read it (a sync's, a state per stream) only for --json.
    document = service.job_document(job.id, job, outputs=json)
    masked = service.job_secrets(job)
    try:
        if json:
            print_json(document, masked)
        else:
            _print_summary(document, masked)
    except BrokenPipeError:  # the reader went away (`| head -1`): the job's end still decides
        reader_gone()
    return 0 if job.status is JobStatus.SUCCEEDED else 1


def _print_summary(document: dict[str, Any], secrets: list[str]) -> None:
    from ferryman.cli.render import stats_table

    job, attempts = document["job"], document["attempts"]
    last = attempts[-1] if attempts else None
    if last is not None and last["streams"]:
        out().print(stats_table(last["streams"]))
    # Over all attempts, as the API's rowsSynced (Airbyte's aggregatedStats); the table is the last's.
    streams = [stream for attempt in attempts for stream in attempt["streams"]]
    emitted = sum(s["records_emitted"] for s in streams)
    committed = [s["records_committed"] for s in streams]
    committed_text = "?" if None in committed else f"{sum(committed):,}"
    over = "; 1 attempt" if len(attempts) == 1 else f" over {len(attempts)} attempts"
    say(
        f"job {job['id']} {job['type']} {job['status']} in {duration(job['duration_s'])}: "
        f"{emitted:,} records emitted, {committed_text} committed{over}"
    )
    if document["log"]:
        say(f"log: {document['log']}")
    if last is not None:
        for failure in last["failures"]:
            print_failure(failure, secrets, brief=True)
        if any("\n" in str(f.get("message", "")).strip() for f in last["failures"]):
            note(f"the full messages: ferryman jobs show {job['id']}")


def print_details(document: dict[str, Any], secrets: list[str]) -> None:
    """Everything about a job, for ``ferryman jobs show``."""
    from ferryman.cli.render import stats_table

    job = document["job"]
    say(f"job {job['id']}: {job['type']} of {job['label']}")
    say(
        f"status {job['status']}"
        + (" (cancel requested)" if job["cancel_requested"] and not _terminal(job["status"]) else "")
        + f"; created {when(job['created_at'])}, duration {duration(job['duration_s'])}"
        + (f"; next attempt at {when(job['next_attempt_at'])}" if job["next_attempt_at"] else "")
    )
    if not document["attempts"]:
        say("no attempt yet")
    for attempt in document["attempts"]:
        say("")
        ended = f", ended {when(attempt['ended_at'])}" if attempt["ended_at"] else ""
        partial = attempt["partial_success"]
        say(
            f"attempt {attempt['number']}: {attempt['status']}, started {when(attempt['created_at'])}"
            f"{ended} ({duration(attempt['duration_s'])})"
            + ("" if partial is None else f"; partial success: {'yes' if partial else 'no'}")
        )
        if attempt["streams"]:
            out().print(stats_table(attempt["streams"]))
        for failure in attempt["failures"]:
            say("  " + failure_line(failure, secrets))
        say(f"log: {attempt['log']}")
    if job["status"] == JobStatus.PENDING.value:
        note(f"job {job['id']} has not started: is a `ferryman worker` running?")


def _terminal(status: str) -> bool:
    return JobStatus(status).terminal
