"""The ad-hoc ``ferryman sync`` and ``ferryman reset``: a source and a destination given inline.

Nothing is stored but the attempt directory and, when asked, a state file. Connections
(``ferryman connections sync``) keep history, retry failed attempts and store their state.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from ferryman.cli.common import (
    FormatOption,
    FullRefreshOption,
    JsonOption,
    Namespace,
    NamespaceOption,
    PrefixOption,
    StreamsOption,
    cancel_on_signals,
    err,
    guarded,
    note,
    out,
    print_failures,
    print_json,
    stream_names,
)
from ferryman.cli.progress import progress_display
from ferryman.cli.terminal import plain
from ferryman.documents import load_config, load_document
from ferryman.errors import UserInputError
from ferryman.protocol.catalog import NamespaceDefinition, NamespaceMapping
from ferryman.protocol.codec import dumps
from ferryman.protocol.state import load_state
from ferryman.secrets import mask_text

if TYPE_CHECKING:  # the runner and the workers are imported when a sync runs, not at --help
    from ferryman.workers import StateCommit, SyncOutput
    from ferryman.workers.checkpoints import StateCheckpoints

DEFAULT_DESTINATION = "builtin:destination-duckdb"
# Destinations that need no config: --destination-config may be left out.
NO_CONFIG = "builtin:destination-devnull"
# Its own file: the connections' DuckDB destination defaults to data.duckdb, and an ad-hoc run
# (a full refresh, a reset) must never replace or clear their tables.
ADHOC_DUCKDB = "adhoc.duckdb"

SourceOpt = Annotated[str, typer.Option("--source", "-s", help="Source connector reference.")]
SourceConfigOpt = Annotated[str, typer.Option("--source-config", help="JSON/YAML file or inline JSON.")]
DestOpt = Annotated[
    str,
    typer.Option("--destination", "-d", help="Destination connector reference (default: embedded DuckDB)."),
]
DestConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--destination-config",
        help="JSON/YAML file or inline JSON "
        "(default: $FERRYMAN_HOME/adhoc.duckdb; {} for destination-devnull).",
    ),
]
StateOpt = Annotated[Path | None, typer.Option("--state", help="State file to start from.")]
SaveStateOpt = Annotated[
    Path | None,
    typer.Option(
        "--save-state",
        help="Write the committed state here as the sync goes (every FERRYMAN_STATE_FLUSH_S) and at its end.",
    ),
]


def _state_saver(path: Path | None, interval_s: float) -> StateCheckpoints | None:
    """Write the committed state to ``path`` as an engine saves it to its store: at most every
    ``interval_s`` (FERRYMAN_STATE_FLUSH_S), when a stream's status changes, and at the end."""
    if path is None:
        return None
    from ferryman.workers.checkpoints import StateCheckpoints

    def save(commit: StateCommit) -> None:
        # Atomic replace of a file whose bytes are on disk: a crash, or the power going, leaves
        # either the previous or the new committed state, never an empty file.
        tmp = _temporary(path)
        with open(tmp, "wb") as file:
            file.write(dumps(commit.aggregated, option=orjson.OPT_INDENT_2))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)

    return StateCheckpoints(save, interval_s)


def _temporary(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def check_save_state(path: Path | None, state: Path | None) -> None:
    """Refuse a --save-state the sync could not write, or that holds something else, before any
    connector runs: found at the first save, the records would be in the destination with their
    state nowhere, and a typo such as --save-state source.json would overwrite a config.

    What the sync writes is a list of STATE messages; a file that holds anything else is only
    overwritten when it is also the --state the sync starts from (a bare legacy state object)."""
    if path is None:
        return
    if path.is_dir():
        raise UserInputError(f"--save-state: {path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise UserInputError(f"--save-state: the directory {path.parent} does not exist; create it first")
    if path.exists():
        if not path.is_file():
            raise UserInputError(f"--save-state: {path} is not a regular file; give a file name")
        if path.stat().st_size and not (state is not None and path.samefile(state)):
            try:
                document = load_document(str(path), "--save-state")
                if not isinstance(document, list):
                    raise UserInputError("not a list of states")
                load_state(document)
            except UserInputError:
                raise UserInputError(
                    f"--save-state: {path} holds something other than a state, which the sync would "
                    "overwrite; give a new file, or the state file to update"
                ) from None
    tmp = _temporary(path)
    try:
        with open(tmp, "wb"):
            pass
        tmp.unlink()
    except OSError as exc:
        raise UserInputError(f"--save-state: cannot write beside {path}: {exc.strerror or exc}") from None


def mapping(namespace: Namespace, namespace_format: str | None, prefix: str) -> NamespaceMapping:
    if namespace is Namespace.customformat and not namespace_format:
        raise UserInputError(
            "--namespace customformat needs --namespace-format, e.g. 'raw_${SOURCE_NAMESPACE}'"
        )
    return NamespaceMapping(NamespaceDefinition(namespace.value), namespace_format, prefix)


class Replication:
    """The options of an ad-hoc sync or reset, and running it."""

    def __init__(
        self, source: str, source_config: str, destination: str, destination_config: str | None
    ) -> None:
        from ferryman.runner import Runner
        from ferryman.workers import ConnectorInput

        self.runner = Runner()
        connector = self.runner.connector(source)
        self.source = ConnectorInput(connector, load_config(source_config, "--source-config"))
        if destination_config is None:
            values = self._default_destination_config(destination)
        else:
            values = load_config(destination_config, "--destination-config")
        self.destination = ConnectorInput(self.runner.connector(destination), values)
        self.target = destination + (f" at {values['path']}" if isinstance(values.get("path"), str) else "")

    def _default_destination_config(self, destination: str) -> dict[str, Any]:
        if destination == DEFAULT_DESTINATION:
            return {"path": str(self.runner.settings.home / ADHOC_DUCKDB)}
        if destination == NO_CONFIG:
            return {}
        raise UserInputError(f"--destination-config is required with --destination {destination}")

    def run(
        self,
        streams: str | None,
        state: Path | None,
        save_state: Path | None,
        namespaces: NamespaceMapping,
        full_refresh: bool,
        json: bool,
        reset: bool,
    ) -> int:
        from ferryman.workers import ReplicationStatus

        initial_state = load_state(load_document(str(state), "--state")) if state else []
        check_save_state(save_state, state)
        names = stream_names(streams)
        cancel = cancel_on_signals()
        catalog = self.runner.configured_catalog(
            self.source,
            names,
            cancel,
            prefer_incremental=not full_refresh,
            destination=self.destination.connector,
        )
        display = progress_display(err()) if not json or sys.stderr.isatty() else None
        secrets = self.runner.secrets(self.source.connector, self.source.config)
        secrets += self.runner.secrets(self.destination.connector, self.destination.config)
        if not json:
            note(mask_text(f"{'resetting' if reset else 'syncing into'} {self.target}", secrets))
        try:
            job_id, output = self.runner.sync(
                self.source,
                self.destination,
                catalog,
                initial_state,
                namespaces,
                cancel,
                on_progress=display,
                on_state=_state_saver(save_state, self.runner.settings.state_flush_s),
                reset=reset,
            )
        finally:
            if display is not None:
                display.close()
        log_path = self.runner.settings.workspace / job_id / "0" / "logs.log"
        if json:
            document = {"job_id": job_id, "destination": self.target, "log": str(log_path)}
            print_json({**document, **output.to_dict()}, secrets)
        else:
            _print_summary(output, log_path, mask_text(self.target, secrets))
        print_failures(output.failures, secrets)
        return 0 if output.status is ReplicationStatus.COMPLETED else 1


def _print_summary(output: SyncOutput, log_path: Path, target: str) -> None:
    from rich.text import Text

    from ferryman.cli.plain_table import PlainTable
    from ferryman.workers import ReplicationStatus

    table = PlainTable("stream", "emitted", "committed", "MB")
    for stream in output.streams:
        committed = stream.records_committed
        table.add_row(
            stream.name,
            f"{stream.records_emitted:,}",
            "?" if committed is None else f"{committed:,}",
            f"{stream.bytes_emitted / 1e6:,.1f}",
        )
    out().print(table)
    seconds = max(0.001, (output.ended_at_ms - output.started_at_ms) / 1000)
    colour = "green" if output.status is ReplicationStatus.COMPLETED else "red"
    figures = (
        f": {output.records_emitted:,} records in {seconds:,.1f}s "
        f"({output.records_emitted / seconds:,.0f}/s), {output.states_committed} states committed "
        f"into {target}; log: {log_path}"
    )
    out().print(Text.assemble((output.status.value, colour), plain(figures)), highlight=False, soft_wrap=True)


def sync(
    source: SourceOpt,
    source_config: SourceConfigOpt,
    destination: DestOpt = DEFAULT_DESTINATION,
    destination_config: DestConfigOpt = None,
    streams: StreamsOption = None,
    state: StateOpt = None,
    save_state: SaveStateOpt = None,
    namespace: NamespaceOption = Namespace.source,
    namespace_format: FormatOption = None,
    prefix: PrefixOption = "",
    full_refresh: FullRefreshOption = False,
    json: JsonOption = False,
) -> None:
    """Move data from a source to a destination, ad hoc (incremental where the source supports it)."""
    guarded(
        lambda: Replication(source, source_config, destination, destination_config).run(
            streams,
            state,
            save_state,
            mapping(namespace, namespace_format, prefix),
            full_refresh,
            json,
            False,
        )
    )


def reset(
    source: SourceOpt,
    source_config: SourceConfigOpt,
    destination: DestOpt = DEFAULT_DESTINATION,
    destination_config: DestConfigOpt = None,
    streams: StreamsOption = None,
    state: StateOpt = None,
    save_state: SaveStateOpt = None,
    namespace: NamespaceOption = Namespace.source,
    namespace_format: FormatOption = None,
    prefix: PrefixOption = "",
    json: JsonOption = False,
) -> None:
    """Clear the streams' data in the destination and empty their state, ad hoc."""
    guarded(
        lambda: Replication(source, source_config, destination, destination_config).run(
            streams, state, save_state, mapping(namespace, namespace_format, prefix), True, json, True
        )
    )
