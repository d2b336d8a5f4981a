"""``ferryman definitions ...`` and ``ferryman applications ...``: what the HTTP API needs.

A definition names a connector for API clients: ``configuration.sourceType: faker`` (or its UUID)
runs the reference it holds. An application is an API client; its secret is printed once.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ferryman.cli.common import JsonOption, guarded, note, print_json, say, when
from ferryman.cli.context import job_service
from ferryman.connectors import parse_reference
from ferryman.connectors.references import definition_slug
from ferryman.errors import UserInputError, WorkerError

definitions_app = typer.Typer(
    help="Connector definitions: the slugs (faker, postgres, ...) that API clients create sources with.",
    no_args_is_help=True,
)
applications_app = typer.Typer(
    help="API clients: a client id and a secret, exchanged for tokens at /applications/token.",
    no_args_is_help=True,
)
KindOption = Annotated[
    str | None,
    typer.Option("--kind", help="source or destination (default: read from the reference's name)."),
]


@definitions_app.command("add")
def add_definition(
    slug: Annotated[str, typer.Argument(help="The name clients use, e.g. faker.")],
    connector: Annotated[
        str, typer.Argument(help="The reference it runs, e.g. pypi:airbyte-source-faker==7.2.1.")
    ],
    kind: KindOption = None,
    json: JsonOption = False,
) -> None:
    """Define SLUG as the connector CONNECTOR."""

    def action() -> int:
        parse_reference(connector)  # a malformed reference is refused now, not at the first job
        side = kind or definition_slug(connector)[0]
        if side is None:
            raise UserInputError(f"cannot tell whether {connector} is a source or a destination: add --kind")
        with job_service() as service:
            # Installed and asked for its spec now, as Airbyte does when a definition is added: a
            # reference that does not work is refused here, and the first source or destination
            # an API client creates from it answers at once (a client waits 5 s by default).
            if service.fetch_spec(connector) is None:
                raise WorkerError(
                    f"{connector} did not answer spec: not added (run `ferryman spec {connector}`)"
                )
            definition = service.store.add_definition(side, slug, connector)
        if json:
            print_json(definition.__dict__, [])
        else:
            say(f"{definition.kind} definition {definition.slug} ({definition.uuid}): {definition.connector}")
        return 0

    guarded(action)


@definitions_app.command("list")
def list_definitions(json: JsonOption = False) -> None:
    """The definitions: built-in ones, then those added (by the CLI, the API, or `definitions add`)."""

    def action() -> int:
        with job_service() as service:
            found = service.store.list_definitions()
        if json:
            print_json([d.__dict__ for d in found], [])
        for d in [] if json else found:
            say(f"{d.kind:<12} {d.slug:<24} {d.uuid}  {d.connector}{'  (built-in)' if d.builtin else ''}")
        return 0

    guarded(action)


@applications_app.command("create")
def create_application(
    name: Annotated[str, typer.Argument(help="What the client is, e.g. airflow.")], json: JsonOption = False
) -> None:
    """A new client id and secret. The secret is printed now and never again."""

    def action() -> int:
        from ferryman.credentials import create_application as create

        with job_service() as service:
            app, secret = create(service.store, name)
        if json:
            print_json({"name": app.name, "client_id": app.client_id, "client_secret": secret}, [])
        else:
            say(f"client_id:     {app.client_id}")
            say(f"client_secret: {secret}")
            note("the secret is shown only now: store it where the client reads it")
        return 0

    guarded(action)


@applications_app.command("list")
def list_applications(json: JsonOption = False) -> None:
    """The applications (their secrets are not kept, so never shown)."""

    def action() -> int:
        with job_service() as service:
            apps = service.store.list_applications()
        rows = [{"name": a.name, "client_id": a.client_id, "created_at": a.created_at} for a in apps]
        if json:
            print_json(rows, [])
        for app in [] if json else apps:
            say(f"{app.name:<24} {app.client_id}  created {when(app.created_at)}")
        return 0

    guarded(action)


@applications_app.command("delete")
def delete_application(
    application: Annotated[str, typer.Argument(help="Its name or client id.")], json: JsonOption = False
) -> None:
    """Delete an application: its tokens stop working at once."""

    def action() -> int:
        with job_service() as service:
            app = service.store.delete_application(application)
        if json:
            print_json({"name": app.name, "client_id": app.client_id, "deleted": True}, [])
        else:
            say(f"application {app.name} ({app.client_id}) deleted")
        return 0

    guarded(action)
