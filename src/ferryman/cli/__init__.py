"""The ``ferryman`` command: thin, it parses options and calls the runner or the job service.

Exit codes: 0 success, 1 the job (or the check) failed, 2 bad usage or bad input.

    ferryman spec|check|discover|sync|reset ...      ad hoc, nothing stored (adhoc, adhoc_sync)
    ferryman sources|destinations ...                configured connectors (actors)
    ferryman connections ...                         what to sync; sync/reset as jobs (connections)
    ferryman jobs ...                                history, attempts, logs, cancel (jobs)
    ferryman state ...                               a connection's committed state (state)
    ferryman worker                                  runs queued jobs (worker)
    ferryman scheduler                               runs connections on their schedules (scheduler)
    ferryman definitions|applications ...            what the HTTP API needs (access)
    ferryman notifications ...                       webhooks told of failed syncs (notifications)
"""

from __future__ import annotations

import typer

from ferryman.cli import (
    access,
    actors,
    adhoc,
    adhoc_sync,
    connections,
    jobs,
    notifications,
    scheduler,
    state,
    worker,
)
from ferryman.cli.common import err
from ferryman.cli.install_progress import report_installs_on

app = typer.Typer(
    name="ferryman",
    help="Run Airbyte-protocol connectors as jobs: spec, check, discover, sync and reset.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for command in (adhoc.spec, adhoc.check, adhoc.discover, adhoc_sync.sync, adhoc_sync.reset):
    app.command()(command)
app.add_typer(actors.sources_app, name="sources")
app.add_typer(actors.destinations_app, name="destinations")
app.add_typer(connections.app, name="connections")
app.add_typer(jobs.app, name="jobs")
app.add_typer(state.app, name="state")
app.add_typer(access.definitions_app, name="definitions")
app.add_typer(access.applications_app, name="applications")
app.add_typer(notifications.app, name="notifications")
app.command()(worker.worker)
app.command()(scheduler.scheduler)
app.command()(adhoc.connectors)
app.command()(adhoc.version)
# A PyPI install takes minutes: every command shows its steps on stderr.
report_installs_on(err)


def main() -> None:
    app()


__all__ = ["app", "main"]
