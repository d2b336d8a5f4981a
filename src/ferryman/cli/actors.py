"""``ferryman sources ...`` and ``ferryman destinations ...``: configured connectors, by name.

Configs are shown masked (docs/secrets.md): the fields the connector's spec marks
``airbyte_secret``, and string fields whose names look like credentials, print as ``**********``,
with ``--json`` too. The spec is the one kept when the actor was created: showing never runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ferryman.cli.common import JsonOption, guarded, note, out, print_json, say, when
from ferryman.cli.context import DESTINATION, SOURCE, job_service
from ferryman.documents import load_config
from ferryman.errors import UserInputError
from ferryman.masking import actor_secrets
from ferryman.secrets import mask_strings
from ferryman.settings import ferryman_home
from ferryman.views import actor_doc

if TYPE_CHECKING:
    from ferryman.store.base import Actor

DUCKDB = "builtin:destination-duckdb"
DEVNULL = "builtin:destination-devnull"  # needs no config

NameArgument = Annotated[str, typer.Argument(help="Its name (or id).")]
NewNameArgument = Annotated[str, typer.Argument(help="A name for it, unique among its kind.")]
ConnectorOption = Annotated[
    str, typer.Option("--connector", help="pypi:NAME[==V], exec:PATH, builtin:NAME or docker:IMAGE[:TAG].")
]
MemoryLimit = Annotated[
    str | None,
    typer.Option("--memory-limit", help="docker: only. Container memory limit, e.g. 2g or 2Gi."),
]
MemoryRequest = Annotated[
    str | None,
    typer.Option("--memory-request", help="docker: only. Memory reservation (a soft limit), e.g. 1g."),
]
CpuLimit = Annotated[
    str | None, typer.Option("--cpu-limit", help="docker: only. CPUs the container may use, e.g. 0.5.")
]
OptionalConfig = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        help="JSON/YAML file or inline JSON (destination-duckdb: default $FERRYMAN_HOME/data.duckdb; "
        "destination-devnull: {}).",
    ),
]


def _config(kind: str, connector: str, config: str | None) -> dict[str, Any]:
    if config is not None:
        return load_config(config, "--config")
    if kind == DESTINATION and connector == DUCKDB:
        return {"path": str(ferryman_home() / "data.duckdb")}
    if kind == DESTINATION and connector == DEVNULL:
        return {}
    raise UserInputError(f"a {kind} needs --config (a JSON/YAML file or inline JSON)")


def _show(actor: Actor, json: bool) -> None:
    document = actor_doc(actor)
    if json:
        print_json(document, actor_secrets(actor))
        return
    say(f"{actor.kind} {actor.name} (id {actor.id}): {actor.connector}, created {when(actor.created_at)}")
    if actor.resources:
        say("container limits: " + ", ".join(f"{k}={v}" for k, v in sorted(actor.resources.items())))
    from ferryman.cli.terminal import json_view

    out().print(json_view(mask_strings(document["config"], actor_secrets(actor))))


def actor_app(kind: str) -> typer.Typer:
    """The sub-command group of one kind of actor; ``kind`` is "source" or "destination"."""
    plural = f"{kind}s"
    app = typer.Typer(help=f"Configured {plural}: a connector and its config, by name.", no_args_is_help=True)

    @app.command("create")
    def create(
        name: NewNameArgument,
        connector: ConnectorOption,
        config: OptionalConfig = None,
        memory_limit: MemoryLimit = None,
        memory_request: MemoryRequest = None,
        cpu_limit: CpuLimit = None,
        json: JsonOption = False,
    ) -> None:
        """Save a connector and its config under a name."""

        def action() -> int:
            from ferryman.launchers.docker import cpus, memory

            values = _config(kind, connector, config)
            given = {
                "memory_limit": memory("--memory-limit", memory_limit),
                "memory_request": memory("--memory-request", memory_request),
                "cpu_limit": cpus("--cpu-limit", cpu_limit),
            }
            resources = {key: value for key, value in given.items() if value is not None}
            with job_service() as service:
                actor = service.create_actor(kind, name, connector, values, resources, on_note=note)
            if actor.connector != connector and not json:
                note(f"{connector} pinned to the version installed now: {actor.connector}")
            _show(actor, json)
            return 0

        guarded(action)

    @app.command("update")
    def update(
        name: NameArgument,
        config: Annotated[
            str | None,
            typer.Option(
                "--config",
                "-c",
                help="JSON/YAML file or inline JSON that replaces the stored config (a secret given as"
                " ********** keeps its stored value).",
            ),
        ] = None,
        merge: Annotated[
            str | None,
            typer.Option(
                "--merge",
                help="JSON/YAML file or inline JSON merged into the stored config key by key, as the"
                ' API\'s PATCH: e.g. --merge \'{"password": "new"}\' changes that field alone.',
            ),
        ] = None,
        rename: Annotated[
            str | None, typer.Option("--name", help="A new name, unique among its kind.")
        ] = None,
        json: JsonOption = False,
    ) -> None:
        """Change its config (checked against the connector's spec) or its name."""

        def action() -> int:
            if config is not None and merge is not None:
                raise UserInputError("give --config (the whole config) or --merge (some fields), not both")
            if config is None and merge is None and rename is None:
                raise UserInputError("nothing to change: give --config, --merge or --name")
            replacing = None if config is None else load_config(config, "--config")
            sent = None if merge is None else load_config(merge, "--merge")
            with job_service() as service:
                actor = service.store.get_actor(kind, name)
                updated = service.update_actor(actor, rename, replacing, patch=sent)
            _show(updated, json)
            return 0

        guarded(action)

    @app.command("list")
    def list_(json: JsonOption = False) -> None:
        """List them, configs masked."""

        def action() -> int:
            with job_service() as service:
                actors = service.store.list_actors(kind)
            documents = [actor_doc(a) for a in actors]
            if json:
                print_json({plural: documents}, actor_secrets(*actors))
                return 0
            from rich.table import Table

            table = Table("id", "name", "connector", "created")
            for actor in actors:
                table.add_row(str(actor.id), actor.name, actor.connector, when(actor.created_at))
            out().print(table)
            return 0

        guarded(action)

    @app.command("show")
    def show(name: NameArgument, json: JsonOption = False) -> None:
        """Show one, config masked."""

        def action() -> int:
            with job_service() as service:
                actor = service.store.get_actor(kind, name)
            _show(actor, json)
            return 0

        guarded(action)

    @app.command("delete")
    def delete(name: NameArgument, json: JsonOption = False) -> None:
        """Delete one (refused while a connection uses it)."""

        def action() -> int:
            with job_service() as service:
                actor = service.store.get_actor(kind, name)
                service.store.delete_actor(kind, actor.id)
            if json:
                print_json({"deleted": {"kind": kind, "id": actor.id, "name": actor.name}}, [])
            else:
                say(f"deleted {kind} {actor.name} (id {actor.id})")
            return 0

        guarded(action)

    return app


sources_app = actor_app(SOURCE)
destinations_app = actor_app(DESTINATION)
