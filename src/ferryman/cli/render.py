"""Tables for people, from the documents of :mod:`ferryman.views`. Presentation only.

It imports rich: import it where a table is printed, not at the top of a command's module, so
that ``--json`` never loads rich.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from ferryman.cli.common import count, duration, when
from ferryman.cli.plain_table import PlainTable
from ferryman.cli.terminal import plain

# -- tables -------------------------------------------------------------------------------------


# A job type in the table, short enough for 80 columns (the scope says source or destination);
# --json and --type keep Airbyte's names.
SHORT_TYPES = {
    "check_connection_source": "check",
    "check_connection_destination": "check",
    "discover_schema": "discover",
    "reset_connection": "reset",
}


def jobs_table(rows: list[dict[str, Any]]) -> Table:
    """Fits 80 columns: only the scope gives way, cut with an ellipsis rather than wrapped."""
    table = Table(box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for column in ("id", "type", "scope", "status", "attempts", "created", "duration"):
        # The scope alone may shrink (rich shrinks wrappable columns first); its cells do not
        # wrap, so a long name is cut to the room left instead of spilling over lines.
        table.add_column(column, no_wrap=column != "scope", min_width=8 if column == "scope" else None)
    for row in rows:
        cancelling = row["cancel_requested"] and row["status"] == "running"
        table.add_row(
            str(row["id"]),
            SHORT_TYPES.get(row["type"], row["type"]),
            plain(row["label"], no_wrap=True, overflow="ellipsis"),
            "cancelling" if cancelling else row["status"],
            str(row["attempts"]),
            when(row["created_at"], short=True),
            duration(row["duration_s"]),
        )
    return table


def stats_table(stats: list[dict[str, Any]], title: str | None = None) -> PlainTable:
    table = PlainTable("stream", "emitted", "committed", "MB", title=title, title_justify="left")
    for stat in stats:
        table.add_row(
            stat["name"] if not stat["namespace"] else f"{stat['namespace']}.{stat['name']}",
            count(stat["records_emitted"]),
            count(stat["records_committed"]),
            f"{stat['bytes_emitted'] / 1e6:,.1f}",
        )
    return table


def streams_table(streams: list[dict[str, Any]]) -> PlainTable:
    table = PlainTable("stream", "sync mode", "destination sync mode", "cursor", "primary key")
    for stream in streams:
        table.add_row(
            stream["name"] if not stream["namespace"] else f"{stream['namespace']}.{stream['name']}",
            stream["sync_mode"] or "",
            stream["destination_sync_mode"] or "",
            ".".join(stream["cursor_field"]),
            ", ".join(".".join(part) for part in stream["primary_key"]),
        )
    return table
