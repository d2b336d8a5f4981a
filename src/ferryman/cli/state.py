"""``ferryman state show|set|clear CONNECTION``: the connection's committed state.

The state is what the next sync starts from: a list of Airbyte STATE messages (STREAM, GLOBAL
or LEGACY). ``show`` prints it in the form ``set`` takes back. None of them reads the connection's
catalog (megabytes for a source of thousands of tables): the state names its streams.
"""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer

from ferryman.cli.common import JsonOption, guarded, print_json, say
from ferryman.cli.context import job_service
from ferryman.documents import load_document
from ferryman.protocol.codec import dumps
from ferryman.protocol.stream_refs import StreamRef

app = typer.Typer(help="A connection's state: what its next sync starts from.", no_args_is_help=True)

ConnectionArgument = Annotated[str, typer.Argument(help="The connection's name (or id).")]


@app.command("show")
def show(connection: ConnectionArgument, json: JsonOption = False) -> None:
    """Print the stored state (a JSON list of STATE messages; [] when there is none)."""

    def action() -> int:
        with job_service() as service:
            conn = service.store.get_connection(connection, catalog=False)
            state = service.shown_state(conn)
        if json:
            print_json({"connection": conn.name, "connection_id": conn.id, "state": state}, [])
        else:
            sys.stdout.write(dumps(state, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0

    guarded(action)


@app.command("set")
def set_(
    connection: ConnectionArgument,
    state: Annotated[str, typer.Argument(help="A JSON/YAML file or inline JSON: a list of STATE messages.")],
    json: JsonOption = False,
) -> None:
    """Replace the stored state (refused while the connection has a live job)."""

    def action() -> int:
        document = load_document(state, "STATE")
        with job_service() as service:
            conn = service.store.get_connection(connection, catalog=False)
            saved = service.set_state(conn, document)
        if json:
            print_json({"connection": conn.name, "connection_id": conn.id, "state": saved}, [])
        else:
            say(f"state of connection {conn.name} set: {len(saved)} state message(s)")
        return 0

    guarded(action)


@app.command("clear")
def clear(
    connection: ConnectionArgument,
    stream: Annotated[
        list[str] | None,
        typer.Option("--stream", help="Clear only this stream's state (NAME or NAMESPACE.NAME). Repeatable."),
    ] = None,
    json: JsonOption = False,
) -> None:
    """Forget the stored state: the next sync starts from scratch (the data stays)."""

    def action() -> int:
        refs = [StreamRef.parse(text) for text in stream or []]
        with job_service() as service:
            conn = service.store.get_connection(connection, catalog=False)
            left = service.clear_state(conn, refs)
        if json:
            print_json({"connection": conn.name, "connection_id": conn.id, "state": left}, [])
        elif refs:
            names = ", ".join(str(ref) for ref in refs)
            say(f"state of connection {conn.name} cleared for {names}: {len(left)} state message(s) left")
        else:
            say(f"state of connection {conn.name} cleared")
        return 0

    guarded(action)
