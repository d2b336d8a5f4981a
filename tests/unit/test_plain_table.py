"""The CLI's tables of streams print what rich's Table prints, byte for byte, without rich laying
out every row: a source with thousands of streams took seconds to show (docs/performance.md)."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.table import Table

from ferryman.cli.common import out
from ferryman.cli.plain_table import PlainTable
from ferryman.cli.render import stats_table, streams_table

# Names as connectors send them: ASCII, wide and combining characters, controls (shown escaped),
# markup-like brackets; now and then a newline, a tab or a zero-width space (rich lays those out).
ONE_LINE = list("ab_.Z09 [/]:é日本😀\u0301<>=\x1b\u202e\x9b")
cells = st.text(st.sampled_from(ONE_LINE), max_size=10) | st.sampled_from(["", "stream_1", "1,234"])
odd_cells = st.text(st.sampled_from([*ONE_LINE, "\t", "\n", "\u200b"]), min_size=1, max_size=4)


def printed(table: object, width: int, terminal: bool) -> str:
    text = io.StringIO()
    console = type(out())(file=text, width=width, force_terminal=terminal, color_system="truecolor")
    console.print(table)
    return text.getvalue()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(cells, min_size=1, max_size=4),
    st.lists(st.lists(cells, min_size=4, max_size=4), max_size=5),
    st.none() | st.tuples(st.integers(0, 20), odd_cells),
    st.none() | cells,
    st.sampled_from(["left", "center", "right"]),
    st.integers(8, 100),
    st.booleans(),
)
def test_a_plain_table_prints_what_rich_prints(
    headers: list[str],
    rows: list[list[str]],
    odd: tuple[int, str] | None,
    title: str | None,
    justify: str,
    width: int,
    terminal: bool,
) -> None:
    rows = [row[: len(headers)] for row in rows]
    if odd is not None:  # one cell (or header) with a newline, a tab or a zero-width space
        at, text = odd
        where = [headers, *rows]
        where[at % len(where)][at % len(headers)] = text
    table = PlainTable(*headers, title=title, title_justify=justify)
    for row in rows:
        table.add_row(*row)
    assert printed(table, width, terminal) == printed(table.rich_table(), width, terminal)


@pytest.fixture
def rows_rich_laid_out(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many rows rich's Table was given, table after table (a spy on rich itself)."""
    counts: list[int] = []
    render = Table.__rich_console__

    def counting(self: Table, *args: object) -> object:
        counts.append(self.row_count)
        return render(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Table, "__rich_console__", counting)
    return counts


def test_thousands_of_streams_are_printed_without_rich_laying_out_each_row(
    rows_rich_laid_out: list[int],
) -> None:
    streams = [
        {
            "name": f"table_{n}",
            "namespace": "public" if n % 2 else None,
            "sync_mode": "incremental",
            "destination_sync_mode": "append_dedup",
            "cursor_field": ["updated_at"],
            "primary_key": [["id"]],
        }
        for n in range(3000)
    ]
    stats = [
        {
            "name": f"table_{n}",
            "namespace": None,
            "records_emitted": n,
            "records_committed": n,
            "bytes_emitted": n,
        }
        for n in range(3000)
    ]
    for table in (streams_table(streams), stats_table(stats, title="attempt 0")):
        text = printed(table, 100, terminal=False)
        assert text.count("\n") == 3000 + 4 + (table.title is not None)
        assert "│ public.table_2999 │ incremental │" in text or "│ table_2999 " in text
    assert rows_rich_laid_out == [1, 1]  # the frame of each: its first row only


def test_a_cell_that_starts_with_a_combining_mark_is_laid_out_as_rich_does() -> None:
    """Found by the property above in CI: a stream name of one combining acute accent."""
    table = PlainTable("", "")
    table.add_row("", "")
    table.add_row("", "\u0301")
    for terminal in (True, False):
        assert printed(table, 80, terminal) == printed(table.rich_table(), 80, terminal)
