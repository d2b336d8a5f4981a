"""``ferryman connections ...``: a source, a destination and the streams between them.

``sync`` and ``reset`` enqueue a job; unless ``--detach``, this process runs it and shows its
progress, and the exit code says how it ended (0 succeeded, 1 failed or cancelled). With
``--detach`` a ``ferryman worker`` runs it.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ferryman.cli.common import (
    CursorOption,
    FormatOption,
    FullRefreshOption,
    JsonOption,
    Namespace,
    NamespaceOption,
    PrefixOption,
    PrimaryKeyOption,
    StreamOption,
    StreamsOption,
    duration,
    err,
    guarded,
    note,
    out,
    print_json,
    say,
    stream_choices,
    stream_names,
    when,
)
from ferryman.cli.context import DESTINATION, SOURCE, job_service
from ferryman.cli.foreground import run_and_watch
from ferryman.cli.progress import progress_display
from ferryman.cli.summary import print_outcome
from ferryman.errors import UserInputError
from ferryman.protocol.state import state_streams, state_type
from ferryman.views import connection_doc, schedule_text

if TYPE_CHECKING:
    from datetime import datetime

    from ferryman.jobs.schedules import Schedule
    from ferryman.service import JobService
    from ferryman.store.base import Actor, Connection


class Status(StrEnum):
    active = "active"
    inactive = "inactive"


app = typer.Typer(help="Connections: what to sync from a source to a destination.", no_args_is_help=True)

NameArgument = Annotated[str, typer.Argument(help="The connection's name (or id).")]
DetachOption = Annotated[
    bool, typer.Option("--detach", help="Only enqueue the job and print its id; a worker runs it.")
]
ScheduleOption = Annotated[
    str | None,
    typer.Option(
        "--schedule",
        help="When the scheduler syncs it: manual (default), 'every 30m' (or 2h, 1d, 1w), or "
        "'cron 0 0 12 * * ?' (Quartz, seconds first) / 'cron 0 12 * * 1-5' (5 fields).",
        show_default=False,
    ),
]
TimezoneOption = Annotated[
    str | None,
    typer.Option("--timezone", help="The cron schedule's time zone (IANA, e.g. Europe/Berlin; default UTC)."),
]
StatusOption = Annotated[
    Status | None,
    typer.Option(
        "--status", help="inactive: the scheduler leaves it alone; active: scheduled again (from now)."
    ),
]


def _doc(service: JobService, connection: Connection) -> dict[str, Any]:
    return connection_doc(connection, *_ends(service, connection))


def _ends(service: JobService, connection: Connection) -> tuple[Actor, Actor]:
    source = service.store.get_actor_by_id(SOURCE, connection.source_id)
    return source, service.store.get_actor_by_id(DESTINATION, connection.destination_id)


def _print_streams(document: dict[str, Any], json: bool) -> int:
    if json:
        print_json(document, [])
    else:
        from ferryman.cli.render import streams_table

        say(_headline(document))
        out().print(streams_table(document["streams"]))
    return 0


def _state_summary(kind: str | None, streams: int) -> str:
    if kind is None:
        return "none"
    return "LEGACY (names no stream)" if kind == "LEGACY" else f"{kind}, {streams} stream(s)"


def _headline(document: dict[str, Any]) -> str:
    ends = f"{document['source']} -> {document['destination']}"
    return f"connection {document['name']} (id {document['id']}): {ends}"


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name for the connection.")],
    source: Annotated[str, typer.Option("--source", "-s", help="The source's name (or id).")],
    destination: Annotated[str, typer.Option("--destination", "-d", help="The destination's name (or id).")],
    streams: StreamsOption = None,
    stream: StreamOption = None,
    cursor: CursorOption = None,
    primary_key: PrimaryKeyOption = None,
    full_refresh: FullRefreshOption = False,
    namespace: NamespaceOption = Namespace.source,
    namespace_format: FormatOption = None,
    prefix: PrefixOption = "",
    schedule: ScheduleOption = None,
    timezone: TimezoneOption = None,
    json: JsonOption = False,
) -> None:
    """Discover the source's streams (a job of its own) and save the connection.

    Each stream gets the mode asked for with --stream, else the first of incremental:append_dedup,
    incremental:append, full_refresh:overwrite, full_refresh:append that both sides support.
    With --schedule, `ferryman server` (or `ferryman scheduler`) syncs it when it is due."""

    def action() -> int:
        choices = stream_choices(stream, cursor, primary_key)
        planned = _schedule(schedule, timezone)
        with job_service() as service:
            connection = service.create_connection(
                name,
                source,
                destination,
                stream_names(streams),
                full_refresh,
                namespace.value,
                namespace_format,
                prefix,
                choices,
                on_note=note,
                schedule=planned,
            )
            document = _doc(service, connection)
        return _print_streams(document, json)

    guarded(action)


@app.command("update")
def update(
    name: NameArgument,
    stream: StreamOption = None,
    cursor: CursorOption = None,
    primary_key: PrimaryKeyOption = None,
    schedule: ScheduleOption = None,
    timezone: TimezoneOption = None,
    status: StatusOption = None,
    json: JsonOption = False,
) -> None:
    """Change the sync mode (or cursor, or primary key) of some streams, the schedule, or the status.

    Stream changes are refused while the connection has a live job; the committed state is kept:
    run `ferryman connections reset` for a clean start in the new mode. A new schedule, or
    --status active, plans the next run from now."""

    def action() -> int:
        choices = stream_choices(stream, cursor, primary_key)
        planned = _schedule(schedule, timezone)
        if not choices and planned is None and status is None:
            raise UserInputError("nothing to change: give --stream, --schedule or --status")
        with job_service() as service:
            connection = service.store.get_connection(name)
            if planned is not None or status is not None:
                connection = service.update_connection(
                    connection, planned, None if status is None else status.value
                )
            if choices:
                connection = service.update_streams(connection, choices)
            document = _doc(service, connection)
            now = service.store.now()
        if planned is not None or status is not None:
            if json:
                print_json(document, [])
                return 0
            say(_headline(document))
            for line in _schedule_lines(document, now):
                say(line)
            return 0
        return _print_streams(document, json)

    guarded(action)


def _schedule(text: str | None, timezone: str | None) -> Schedule | None:
    from ferryman.jobs.schedules import parse_schedule

    if text is None:
        if timezone:
            raise UserInputError("--timezone goes with --schedule 'cron ...'")
        return None
    return parse_schedule(text, timezone)


def _schedule_lines(document: dict[str, Any], now: datetime) -> list[str]:
    """``schedule: every 2h; next run 2026-01-01 13:00:00 (in 59m 12s)``, and why it is inactive.
    ``now``: the store's time, which the scheduler goes by, so the wait shown is the scheduler's
    whatever this machine's clock says."""
    line = f"schedule: {document['schedule']}"
    upcoming = document.get("next_run_at")
    if upcoming is not None:
        wait = max(0.0, (upcoming - now).total_seconds())
        line += f"; next run {when(upcoming)} ({'due now' if wait == 0 else 'in ' + duration(wait)})"
    elif document["status"] != "active":
        line += "; not scheduled: the connection is inactive"
    lines = [line]
    if document.get("status_reason"):
        lines.append(f"status: {document['status']}: {document['status_reason']}")
    return lines


@app.command("list")
def list_(json: JsonOption = False) -> None:
    """List connections."""

    def action() -> int:
        with job_service() as service:
            # The table shows how many streams each has, not which: their catalogs (megabytes
            # for thousands of streams) are read for --json only, and counted by the database.
            found = service.store.list_connections(catalogs=json)
            ends = [(c, *_ends(service, c)) for c in found]
        if json:
            print_json({"connections": [connection_doc(*listed) for listed in ends]}, [])
            return 0
        from rich.table import Table

        table = Table("id", "name", "source", "destination", "streams", "status", "schedule", "next run")
        for conn, source, destination in ends:
            table.add_row(
                str(conn.id),
                str(conn.name),
                str(source.name),
                str(destination.name),
                str(conn.stream_count),
                str(conn.status),
                schedule_text(conn),
                when(conn.next_run_at),
            )
        out().print(table)
        return 0

    guarded(action)


@app.command("show")
def show(name: NameArgument, json: JsonOption = False) -> None:
    """Show a connection: its schedule and next run, its streams, its state and its latest jobs."""

    def action() -> int:
        with job_service() as service:
            connection = service.store.get_connection(name)
            document = _doc(service, connection)
            state = service.store.get_state(connection.id)
            jobs = service.store.list_jobs(scope=str(connection.id), limit=5)
            now = service.store.now()
        kind = state_type(state[0]) if state else None
        document["state_type"] = kind
        document["state_streams"] = len(state_streams(state))  # a GLOBAL state is one message, many streams
        document["latest_jobs"] = [{"id": j.id, "type": j.type.value, "status": j.status.value} for j in jobs]
        if json:
            print_json(document, [])
            return 0
        say(_headline(document))
        say(
            f"namespace: {connection.namespace_definition}"
            + (f" ({connection.namespace_format})" if connection.namespace_format else "")
            + (f", prefix {connection.prefix!r}" if connection.prefix else "")
            + f"; state: {_state_summary(kind, document['state_streams'])}"
        )
        for line in _schedule_lines(document, now):
            say(line)
        from ferryman.cli.render import streams_table

        out().print(streams_table(document["streams"]))
        for job in document["latest_jobs"]:
            say(f"job {job['id']}: {job['type']} {job['status']}")
        return 0

    guarded(action)


@app.command("delete")
def delete(name: NameArgument, json: JsonOption = False) -> None:
    """Delete a connection and its state (its live job, if any, is cancelled)."""

    def action() -> int:
        with job_service() as service:
            connection = service.store.get_connection(name, catalog=False)  # its id and name
            service.store.delete_connection(connection.id)
        if json:
            print_json({"deleted": {"id": connection.id, "name": connection.name}}, [])
        else:
            say(f"deleted connection {connection.name} (id {connection.id})")
        return 0

    guarded(action)


def _replicate(name: str, reset: bool, detach: bool, json: bool) -> int:
    with job_service() as service:
        job = service.enqueue_replication(service.store.get_connection(name), reset=reset, here=not detach)
        if detach:
            if json:
                print_json({"job": {"id": job.id, "type": job.type.value, "status": job.status.value}}, [])
            else:
                say(f"job {job.id} ({job.type.value}) is {job.status.value}: a `ferryman worker` will run it")
            reason = service.unsubmitted.get(job.id)
            if reason is not None:  # queued all the same: the Temporal workers' sweep starts it later
                note(f"warning: {reason}; job {job.id} stays queued, to start once a worker reaches Temporal")
            return 0
        display = progress_display(err()) if not json or sys.stderr.isatty() else None
        ended = run_and_watch(service, job, display, service.job_secrets(job))
        del job  # as it was queued, with its config (a sync's whole catalog): ``ended`` has one
        return print_outcome(service, ended, json)


@app.command("sync")
def sync(name: NameArgument, detach: DetachOption = False, json: JsonOption = False) -> None:
    """Sync a connection from its stored state; exit 0 if the job succeeded, 1 if not."""
    guarded(lambda: _replicate(name, False, detach, json))


@app.command("reset")
def reset(name: NameArgument, detach: DetachOption = False, json: JsonOption = False) -> None:
    """Clear the connection's streams in the destination and empty its state."""
    guarded(lambda: _replicate(name, True, detach, json))
