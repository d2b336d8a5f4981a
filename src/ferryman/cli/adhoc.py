"""One-shot commands that keep no history: spec, check, discover, connectors, version.

They run a connector ad hoc, with no store: nothing is kept but the attempt directory (and the
state file a user asks for). For history, retries and stored state, use ``connections``.
The ad-hoc ``sync`` and ``reset`` live in :mod:`ferryman.cli.adhoc_sync`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ferryman import __version__
from ferryman.cli.common import (
    ConfigOption,
    JsonOption,
    cancel_on_signals,
    guarded,
    out,
    print_failures,
    print_json,
)
from ferryman.connectors.references import BUILTIN_MODULES
from ferryman.documents import load_config
from ferryman.secrets import mask_text

if TYPE_CHECKING:
    from ferryman.runner import Runner


def _runner() -> Runner:
    """The runner, imported when a command runs a connector: its workers, launchers and
    connectors are not loaded for ``--help`` or another command."""
    from ferryman.runner import Runner

    return Runner()


def spec(
    reference: Annotated[str, typer.Argument(help="pypi:NAME[==V], exec:PATH or builtin:NAME")],
    json: JsonOption = False,
) -> None:
    """Print what inputs a connector needs (its specification)."""

    def action() -> int:
        runner = _runner()
        output = runner.spec(runner.connector(reference), cancel_on_signals())
        if json:
            status = "succeeded" if output.spec is not None else "failed"
            failures = [f.to_dict() for f in output.failures]
            print_json({"status": status, "spec": output.spec, "failures": failures}, [])
        elif output.spec is not None:
            from ferryman.cli.terminal import json_view

            out().print(json_view(output.spec))
        print_failures(output.failures, [])
        return 0 if output.spec is not None else 1

    guarded(action)


def check(reference: str, config: ConfigOption, json: JsonOption = False) -> None:
    """Verify that a config can be used: exit 0 if the connector says it can, 1 if not."""

    def action() -> int:
        runner = _runner()
        connector = runner.connector(reference)
        values = load_config(config, "--config")
        secrets = runner.secrets(connector, values)
        job_id, output = runner.check(connector, values, cancel_on_signals())
        succeeded = output.check_succeeded is True
        verdict = "succeeded" if succeeded else "failed"
        if json:
            check_doc = None
            if output.check_succeeded is not None:
                check_doc = {"status": verdict, "message": output.check_message}
            document = {
                "job_id": job_id,
                "status": "succeeded" if output.check_succeeded is not None else "failed",
                "check": check_doc,
                "config_updated": output.updated_config is not None,
                "failures": [f.to_dict() for f in output.failures],
            }
            print_json(document, secrets)
        elif output.check_succeeded is not None:
            from rich.text import Text

            from ferryman.cli.terminal import plain

            colour = "green" if succeeded else "red"
            message = f": {mask_text(output.check_message, secrets)}" if output.check_message else ""
            line = Text.assemble("check ", (verdict, colour), plain(message))
            out().print(line, highlight=False, soft_wrap=True)
        print_failures(output.failures, secrets)
        return 0 if succeeded else 1

    guarded(action)


def discover(reference: str, config: ConfigOption, json: JsonOption = False) -> None:
    """Print the source's schema (its catalog of streams)."""

    def action() -> int:
        runner = _runner()
        connector = runner.connector(reference)
        values = load_config(config, "--config")
        secrets = runner.secrets(connector, values)
        job_id, output = runner.discover(connector, values, cancel_on_signals())
        if json:
            document = {
                "job_id": job_id,
                "status": "succeeded" if output.catalog is not None else "failed",
                "catalog": output.catalog,
                "failures": [f.to_dict() for f in output.failures],
            }
            print_json(document, secrets)
        elif output.catalog is not None:
            from ferryman.cli.plain_table import PlainTable

            table = PlainTable("stream", "namespace", "sync modes", "primary key")
            for stream in output.catalog.get("streams", []):
                table.add_row(
                    stream.get("name"),
                    stream.get("namespace") or "",
                    ", ".join(stream.get("supported_sync_modes") or []),
                    ", ".join(".".join(p) for p in stream.get("source_defined_primary_key") or []),
                )
            out().print(table)
        print_failures(output.failures, secrets)
        return 0 if output.catalog is not None else 1

    guarded(action)


def connectors(json: JsonOption = False) -> None:
    """List the built-in connectors and the PyPI connectors installed in FERRYMAN_HOME."""

    def action() -> int:
        from ferryman.connectors.pypi import list_installed

        runner = _runner()
        rows = [
            {"reference": f"builtin:{name}", "location": module} for name, module in BUILTIN_MODULES.items()
        ]
        rows += [
            {"reference": f"pypi:{c.name}=={c.version}", "location": str(c.venv)}
            for c in list_installed(runner.settings.venvs)
        ]
        if json:
            print_json({"connectors": rows}, [])
        else:
            from rich.table import Table

            table = Table("reference", "location")
            for row in rows:
                table.add_row(row["reference"], row["location"])
            out().print(table)
        return 0

    guarded(action)


def version() -> None:
    """Print Ferryman's version."""
    out().print(__version__)
