"""``ferryman jobs ...``: every job is a row (spec, check, discover, sync, reset), with its attempts.

``logs`` reads an attempt's log from its end, so it is fast on multi-GB files, and ``--follow``
prints new lines until the attempt ends.
"""

from __future__ import annotations

import sys
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ferryman.cli.common import JsonOption, guarded, out, print_json, say
from ferryman.cli.context import job_service
from ferryman.cli.summary import print_details
from ferryman.jobs.states import JobStatus, JobType
from ferryman.printable import visible
from ferryman.secrets import mask_text
from ferryman.views import job_doc

if TYPE_CHECKING:
    from ferryman.service import JobService
    from ferryman.store.base import Attempt

app = typer.Typer(help="Jobs: their attempts, failures, stats and logs.", no_args_is_help=True)

JobArgument = Annotated[int, typer.Argument(help="The job's id.")]
WAIT_POLL_S = 0.25


@app.command("list")
def list_(
    connection: Annotated[
        str | None, typer.Option("--connection", help="Only this connection's syncs and resets.")
    ] = None,
    status: Annotated[JobStatus | None, typer.Option("--status", help="Only jobs in this state.")] = None,
    type_: Annotated[JobType | None, typer.Option("--type", help="Only jobs of this type.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many, newest first.")] = 50,
    json: JsonOption = False,
) -> None:
    """List jobs, newest first."""

    def action() -> int:
        with job_service() as service:
            scope = str(service.store.get_connection(connection).id) if connection else None
            from ferryman.store.base import JobQuery
            from ferryman.store.rows import MAX_ID

            # page_jobs leaves a sync's config (megabytes for thousands of streams) unread.
            types = () if type_ is None else (JobType(type_),)
            query = JobQuery(scope, types, status, order_by="id", descending=True, limit=min(limit, MAX_ID))
            jobs = service.store.page_jobs(query)
            names = service.names()
            rows = [job_doc(job, names, service.store.job_totals(job.id).attempts) for job in jobs]
        if json:
            print_json({"jobs": rows}, [])
        else:
            from ferryman.cli.render import jobs_table

            out().print(jobs_table(rows))
        return 0

    guarded(action)


@app.command("show")
def show(job_id: JobArgument, json: JsonOption = False) -> None:
    """Show a job: each attempt with its status, failures and per-stream stats, and its log."""

    def action() -> int:
        with job_service() as service:
            document = service.job_document(job_id, outputs=json)  # only --json prints outputs
            secrets = service.job_secrets(service.store.get_job(job_id, catalog=False))
        if json:
            print_json(document, secrets)
        else:
            print_details(document, secrets)
        return 0

    guarded(action)


@app.command("cancel")
def cancel(job_id: JobArgument, json: JsonOption = False) -> None:
    """Cancel a job: at once if it waits; a running one stops its connectors (SIGTERM, grace, SIGKILL)."""

    def action() -> int:
        with job_service() as service:
            job = service.cancel(job_id)
        stopping = job.status is JobStatus.RUNNING and job.cancel_requested
        if json:
            print_json({"job": {"id": job.id, "status": job.status.value, "cancel_requested": stopping}}, [])
        elif stopping:
            say(f"job {job.id} is running: cancel requested, its engine is stopping the connectors")
        else:
            say(f"job {job.id} is {job.status.value}")
        return 0

    guarded(action)


def _wait_for_attempt(service: JobService, job_id: int) -> None:
    """With --follow on a job that has not started yet: wait for its first attempt (or its end)."""
    while not service.store.list_attempts(job_id):
        if service.store.get_job(job_id, catalog=False).status.terminal:
            return  # log_path() then says there is no attempt
        time.sleep(WAIT_POLL_S)


def _attempt(service: JobService, job_id: int, path: Path) -> Attempt:
    return next(a for a in service.store.list_attempts(job_id) if Path(a.log_path) == path)


def _ended(service: JobService, job_id: int, number: int) -> bool:
    attempts = service.store.list_attempts(job_id)
    return any(a.number == number and a.status.terminal for a in attempts)


def _emit(line: str, json: bool, job_id: int, number: int, secrets: list[str]) -> None:
    line = mask_text(line, secrets)  # before visible(): a secret is masked as the log holds it
    if json:
        print_json({"job_id": job_id, "attempt": number, "line": line}, [], one_line=True)
    else:
        # On a terminal a connector's control characters are shown, not obeyed (see docs/cli.md);
        # into a pipe or a file the lines go as the log holds them (color=True: click would cut
        # its colour codes, and only those).
        typer.echo(visible(line) if _on_terminal() else line, color=True)


@cache
def _on_terminal() -> bool:
    return sys.stdout.isatty()


@app.command("logs")
def logs(
    job_id: JobArgument,
    attempt: Annotated[
        int | None, typer.Option("--attempt", help="Attempt number (default: the last).")
    ] = None,
    tail: Annotated[int, typer.Option("--tail", min=0, help="Print the last N lines.")] = 100,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="Then print new lines until the attempt ends.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Print an attempt's log (connector output, lifecycle), secrets masked.

    With --json: one document with the lines, or with --follow one JSON object per line.
    """

    def action() -> int:
        from ferryman.logtail import tail_lines

        with job_service() as service:
            job = service.store.get_job(job_id, catalog=False)  # for its secrets
            if follow_:
                _wait_for_attempt(service, job_id)
            path = service.log_path(job_id, attempt)
            number = _attempt(service, job_id, path).number
            lines, offset = tail_lines(path, tail, max_bytes=None)  # what the user asked for, whole
            secrets = service.job_secrets(job)
            if json and not follow_:
                document = {"job_id": job_id, "attempt": number, "log": str(path), "lines": lines}
                print_json(document, secrets)
                return 0
            for line in lines:
                _emit(line, json, job_id, number, secrets)
            if follow_:
                _follow(service, job_id, number, path, json, secrets, offset)
        return 0

    guarded(action)


def _follow(
    service: JobService, job_id: int, number: int, path: Path, json: bool, secrets: list[str], offset: int
) -> None:
    from ferryman.logtail import follow

    def ended() -> bool:
        return _ended(service, job_id, number)

    while not path.exists():  # the engine creates it as the attempt starts
        if ended():
            return
        time.sleep(WAIT_POLL_S)
    try:
        for line in follow(path, ended, offset):
            _emit(line, json, job_id, number, secrets)
    except KeyboardInterrupt:
        return  # Ctrl-C is how one stops following a log: not an error
