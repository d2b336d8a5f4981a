"""The ``ferryman`` command: thin, it parses options and calls the runner.

Exit codes: 0 success, 1 the job (or the check) failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer
from rich.console import Console
from rich.table import Table

from ferryman import __version__
from ferryman.cli_progress import progress_display
from ferryman.connectors.pypi import list_installed
from ferryman.connectors.references import BUILTIN_MODULES
from ferryman.errors import FerrymanError, UserInputError
from ferryman.jobs.failures import FailureReason
from ferryman.protocol.catalog import NamespaceDefinition, NamespaceMapping
from ferryman.protocol.state import load_state
from ferryman.runner import Runner, load_config, load_document
from ferryman.secrets import mask_text
from ferryman.workers import ConnectorInput, ReplicationStatus, StateCommit, SyncOutput

app = typer.Typer(
    name="ferryman",
    help="Run Airbyte-protocol connectors as jobs: spec, check, discover, sync and reset.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
out = Console()

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
ConfigOption = Annotated[str, typer.Option("--config", "-c", help="JSON/YAML file or inline JSON.")]


class Namespace(StrEnum):
    source = "source"
    destination = "destination"
    customformat = "customformat"


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _guarded(action: Callable[[], int]) -> None:
    """Run a command; bad input becomes one line and exit 2, a failed job exit 1."""
    try:
        code = action()
    except UserInputError as exc:
        _fail(str(exc), 2)
    except FerrymanError as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    raise typer.Exit(code)


def _mask(document: Any, secrets: list[str]) -> Any:
    if isinstance(document, str):
        return mask_text(document, secrets)
    if isinstance(document, dict):
        return {k: _mask(v, secrets) for k, v in document.items()}
    if isinstance(document, list):
        return [_mask(v, secrets) for v in document]
    return document


def _print_json(document: dict[str, Any], secrets: list[str]) -> None:
    sys.stdout.write(orjson.dumps(_mask(document, secrets), option=orjson.OPT_INDENT_2).decode() + "\n")


def _print_failures(failures: list[FailureReason], secrets: list[str]) -> None:
    for failure in failures:
        retry = "retryable" if failure.retryable else "not retryable"
        err.print(
            f"[red]{failure.origin.value} {failure.type.value}[/] ({retry}): "
            f"{mask_text(failure.message, secrets)}",
            highlight=False,
            soft_wrap=True,
        )


def _cancel_on_signals() -> threading.Event:
    """Ctrl-C or SIGTERM cancels the job: connectors get SIGTERM, grace, then SIGKILL."""
    cancel = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        err.print("cancelling: stopping the connectors (again to abort)")
        cancel.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return cancel


@app.command()
def spec(
    reference: Annotated[str, typer.Argument(help="pypi:NAME[==V], exec:PATH or builtin:NAME")],
    json: JsonOption = False,
) -> None:
    """Print what inputs a connector needs (its specification)."""

    def action() -> int:
        runner = Runner()
        output = runner.spec(runner.connector(reference), _cancel_on_signals())
        if json:
            _print_json(
                {
                    "status": "succeeded" if output.spec is not None else "failed",
                    "spec": output.spec,
                    "failures": [f.to_dict() for f in output.failures],
                },
                [],
            )
        elif output.spec is not None:
            out.print_json(data=output.spec)
        _print_failures(output.failures, [])
        return 0 if output.spec is not None else 1

    _guarded(action)


@app.command()
def check(reference: str, config: ConfigOption, json: JsonOption = False) -> None:
    """Verify that a config can be used: exit 0 if the connector says it can, 1 if not."""

    def action() -> int:
        runner = Runner()
        connector = runner.connector(reference)
        values = load_config(config, "--config")
        secrets = runner.secrets(connector, values)
        job_id, output = runner.check(connector, values, _cancel_on_signals())
        succeeded = output.check_succeeded is True
        if json:
            _print_json(
                {
                    "job_id": job_id,
                    "status": "succeeded" if output.check_succeeded is not None else "failed",
                    "check": None
                    if output.check_succeeded is None
                    else {
                        "status": "succeeded" if succeeded else "failed",
                        "message": output.check_message,
                    },
                    "config_updated": output.updated_config is not None,
                    "failures": [f.to_dict() for f in output.failures],
                },
                secrets,
            )
        elif output.check_succeeded is not None:
            verdict = "[green]succeeded[/]" if succeeded else "[red]failed[/]"
            message = f": {mask_text(output.check_message, secrets)}" if output.check_message else ""
            out.print(f"check {verdict}{message}", highlight=False, soft_wrap=True)
        _print_failures(output.failures, secrets)
        return 0 if succeeded else 1

    _guarded(action)


@app.command()
def discover(reference: str, config: ConfigOption, json: JsonOption = False) -> None:
    """Print the source's schema (its catalog of streams)."""

    def action() -> int:
        runner = Runner()
        connector = runner.connector(reference)
        values = load_config(config, "--config")
        secrets = runner.secrets(connector, values)
        job_id, output = runner.discover(connector, values, _cancel_on_signals())
        if json:
            _print_json(
                {
                    "job_id": job_id,
                    "status": "succeeded" if output.catalog is not None else "failed",
                    "catalog": output.catalog,
                    "failures": [f.to_dict() for f in output.failures],
                },
                secrets,
            )
        elif output.catalog is not None:
            table = Table("stream", "namespace", "sync modes", "primary key")
            for stream in output.catalog.get("streams", []):
                table.add_row(
                    stream.get("name"),
                    stream.get("namespace") or "",
                    ", ".join(stream.get("supported_sync_modes") or []),
                    ", ".join(".".join(p) for p in stream.get("source_defined_primary_key") or []),
                )
            out.print(table)
        _print_failures(output.failures, secrets)
        return 0 if output.catalog is not None else 1

    _guarded(action)


def _state_saver(path: Path | None) -> Callable[[StateCommit], None] | None:
    if path is None:
        return None

    def save(commit: StateCommit) -> None:
        # Atomic replace: a crash leaves either the previous or the new committed state.
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(orjson.dumps(commit.aggregated, option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)

    return save


def _replicate(
    source: str,
    source_config: str,
    destination: str,
    destination_config: str | None,
    streams: str | None,
    state: Path | None,
    save_state: Path | None,
    mapping: NamespaceMapping,
    full_refresh: bool,
    json: bool,
    reset: bool,
) -> int:
    runner = Runner()
    source_input = ConnectorInput(runner.connector(source), load_config(source_config, "--source-config"))
    if destination_config is None:
        if destination != DEFAULT_DESTINATION:
            raise UserInputError("--destination-config is required with --destination")
        destination_values = {"path": str(runner.settings.home / "data.duckdb")}
    else:
        destination_values = load_config(destination_config, "--destination-config")
    destination_input = ConnectorInput(runner.connector(destination), destination_values)
    initial_state = load_state(load_document(str(state), "--state")) if state else []
    names = [s.strip() for s in streams.split(",") if s.strip()] if streams else None
    cancel = _cancel_on_signals()
    catalog = runner.configured_catalog(source_input, names, cancel, prefer_incremental=not full_refresh)
    display = progress_display(err) if not json or sys.stderr.isatty() else None
    try:
        job_id, output = runner.sync(
            source_input,
            destination_input,
            catalog,
            initial_state,
            mapping,
            cancel,
            on_progress=display,
            on_state=_state_saver(save_state),
            reset=reset,
        )
    finally:
        if display is not None:
            display.close()
    secrets = runner.secrets(source_input.connector, source_input.config) + runner.secrets(
        destination_input.connector, destination_input.config
    )
    log_path = runner.settings.workspace / job_id / "0" / "logs.log"
    if json:
        _print_json({"job_id": job_id, "log": str(log_path), **output.to_dict()}, secrets)
    else:
        _print_summary(output, log_path)
    _print_failures(output.failures, secrets)
    return 0 if output.status is ReplicationStatus.COMPLETED else 1


def _print_summary(output: SyncOutput, log_path: Path) -> None:
    table = Table("stream", "emitted", "committed", "MB")
    for stream in output.streams:
        committed = stream.records_committed
        table.add_row(
            stream.name,
            f"{stream.records_emitted:,}",
            "?" if committed is None else f"{committed:,}",
            f"{stream.bytes_emitted / 1e6:,.1f}",
        )
    out.print(table)
    seconds = max(0.001, (output.ended_at_ms - output.started_at_ms) / 1000)
    colour = "green" if output.status is ReplicationStatus.COMPLETED else "red"
    out.print(
        f"[{colour}]{output.status.value}[/]: {output.records_emitted:,} records in {seconds:,.1f}s "
        f"({output.records_emitted / seconds:,.0f}/s), {output.states_committed} states committed; "
        f"log: {log_path}",
        highlight=False,
        soft_wrap=True,
    )


SourceOpt = Annotated[str, typer.Option("--source", "-s", help="Source connector reference.")]
SourceConfigOpt = Annotated[str, typer.Option("--source-config", help="JSON/YAML file or inline JSON.")]
DestOpt = Annotated[
    str,
    typer.Option("--destination", "-d", help="Destination connector reference (default: embedded DuckDB)."),
]
DestConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--destination-config", help="JSON/YAML file or inline JSON (default: $FERRYMAN_HOME/data.duckdb)."
    ),
]
DEFAULT_DESTINATION = "builtin:destination-duckdb"
StreamsOpt = Annotated[str | None, typer.Option("--streams", help="Comma-separated streams (default: all).")]
StateOpt = Annotated[Path | None, typer.Option("--state", help="State file to start from.")]
SaveStateOpt = Annotated[
    Path | None,
    typer.Option("--save-state", help="Write the committed state here as it is committed."),
]
NamespaceOpt = Annotated[Namespace, typer.Option("--namespace", help="Where streams land.")]
FormatOpt = Annotated[
    str | None,
    typer.Option("--namespace-format", help="With customformat: e.g. 'raw_${SOURCE_NAMESPACE}'."),
]
PrefixOpt = Annotated[str, typer.Option("--prefix", help="Prefix for destination stream names.")]


def _mapping(namespace: Namespace, namespace_format: str | None, prefix: str) -> NamespaceMapping:
    if namespace is Namespace.customformat and not namespace_format:
        raise UserInputError(
            "--namespace customformat needs --namespace-format, e.g. 'raw_${SOURCE_NAMESPACE}'"
        )
    return NamespaceMapping(NamespaceDefinition(namespace.value), namespace_format, prefix)


@app.command()
def sync(
    source: SourceOpt,
    source_config: SourceConfigOpt,
    destination: DestOpt = DEFAULT_DESTINATION,
    destination_config: DestConfigOpt = None,
    streams: StreamsOpt = None,
    state: StateOpt = None,
    save_state: SaveStateOpt = None,
    namespace: NamespaceOpt = Namespace.source,
    namespace_format: FormatOpt = None,
    prefix: PrefixOpt = "",
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Full refresh + overwrite every stream.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Move data from a source to a destination (incremental where the source supports it)."""
    _guarded(
        lambda: _replicate(
            source,
            source_config,
            destination,
            destination_config,
            streams,
            state,
            save_state,
            _mapping(namespace, namespace_format, prefix),
            full_refresh,
            json,
            reset=False,
        )
    )


@app.command()
def reset(
    source: SourceOpt,
    source_config: SourceConfigOpt,
    destination: DestOpt = DEFAULT_DESTINATION,
    destination_config: DestConfigOpt = None,
    streams: StreamsOpt = None,
    state: StateOpt = None,
    save_state: SaveStateOpt = None,
    namespace: NamespaceOpt = Namespace.source,
    namespace_format: FormatOpt = None,
    prefix: PrefixOpt = "",
    json: JsonOption = False,
) -> None:
    """Clear the streams' data in the destination and empty their state."""
    _guarded(
        lambda: _replicate(
            source,
            source_config,
            destination,
            destination_config,
            streams,
            state,
            save_state,
            _mapping(namespace, namespace_format, prefix),
            True,
            json,
            reset=True,
        )
    )


@app.command()
def connectors(json: JsonOption = False) -> None:
    """List the built-in connectors and the PyPI connectors installed in FERRYMAN_HOME."""

    def action() -> int:
        runner = Runner()
        rows = [
            {"reference": f"builtin:{name}", "location": module} for name, module in BUILTIN_MODULES.items()
        ]
        rows += [
            {"reference": f"pypi:{c.name}=={c.version}", "location": str(c.venv)}
            for c in list_installed(runner.settings.venvs)
        ]
        if json:
            _print_json({"connectors": rows}, [])
        else:
            table = Table("reference", "location")
            for row in rows:
                table.add_row(row["reference"], row["location"])
            out.print(table)
        return 0

    _guarded(action)


@app.command()
def version() -> None:
    """Print Ferryman's version."""
    out.print(__version__)


def main() -> None:
    app()
