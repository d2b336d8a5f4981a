"""A table of plain-text cells, one line a row, printed exactly as rich's ``Table`` prints it,
in time that stays small for thousands of rows.

Rich lays out and renders every cell of a table on its own: about half a millisecond a row of
five cells, so 2.5 s to print the streams of a source with 5,000 tables (``connections show``,
``connections create``, ``jobs show``, ``discover``, the summary of ``sync``). When every cell is
one line of printable text and the table fits the console at its natural width, each body row
of rich's default table is the cells padded with spaces between the box's verticals, with no
style at all. So rich renders only the frame here: the title, the top, the header and the first
body row, in columns as wide as the widest cell of each; the other rows are formatted as that
first row is, which is checked against rich's own rendering of it before any is used.
Anything else (a cell with a newline or a tab, a table wider than the console, a console that
is not Ferryman's plain one) goes to rich's ``Table`` whole, as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ferryman.printable import visible

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.segment import Segment
    from rich.table import Table


class PlainTable:
    """Rich's default ``Table(*headers, title=..., title_justify=...)`` of ``str`` cells."""

    def __init__(self, *headers: str, title: str | None = None, title_justify: str = "center") -> None:
        self.headers = headers
        self.title = title
        self.title_justify = title_justify
        self.rows: list[tuple[str, ...]] = []

    def add_row(self, *cells: str | None) -> None:
        """As rich's: None is an empty cell."""
        self.rows.append(tuple("" if cell is None else cell for cell in cells))

    def rich_table(self, widths: list[int] | None = None, rows: int | None = None) -> Table:
        """The same table as rich's, with ``rows`` of its rows (all by default) and, given
        ``widths``, columns at least that wide."""
        from rich.table import Table

        table = Table(title=self.title, title_justify=self.title_justify)  # type: ignore[arg-type]
        for at, header in enumerate(self.headers):
            table.add_column(header, min_width=None if widths is None else widths[at])
        for row in self.rows[:rows]:
            table.add_row(*row)
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = self._lines(console, options)
        if lines is None:
            yield self.rich_table()
        else:
            yield from lines

    def _lines(self, console: Console, options: ConsoleOptions) -> Iterator[Segment] | None:
        from rich.cells import cell_len

        from ferryman.cli.terminal import console_class

        if len(self.rows) < 2 or not isinstance(console, console_class()):
            return None
        # What the plain console shows of each cell (see ferryman.cli.terminal); one line each.
        texts = [[visible(cell) for cell in row] for row in self.rows]
        headers = [visible(header) for header in self.headers]
        if not all(header.isprintable() and not _leads_with_a_mark(header) for header in headers):
            return None
        widths = [cell_len(header) for header in headers]
        for row in texts:
            if len(row) != len(widths):
                return None
            for at, text in enumerate(row):
                if not text.isprintable() or _leads_with_a_mark(text):  # rich's way (see below)
                    return None
                widths[at] = max(widths[at], cell_len(text))
        if sum(widths) + 3 * len(widths) + 1 > options.max_width:
            return None  # rich would shrink and wrap columns
        frame = console.render_lines(self.rich_table(widths, rows=1), options, pad=False)
        # The title's lines, the top, the header, the header's rule, the first row, the bottom.
        first, bottom = frame[-2], frame[-1]
        if any(segment.style or segment.control for segment in first):
            return None
        shown = "".join(segment.text for segment in first)

        def cells(row: list[str]) -> list[str]:
            return [f" {text}{' ' * (widths[at] - cell_len(text))} " for at, text in enumerate(row)]

        # The box's characters as rich drew them (they depend on the console's encoding).
        left, right = shown[:1], shown[-1:]
        middle = shown[1 + len(cells(texts[0])[0]) :][:1]

        def line(row: list[str]) -> str:
            return left + middle.join(cells(row)) + right

        if line(texts[0]) != shown:
            return None
        return _segments(frame[:-1], (line(row) for row in texts[1:]), bottom)


def _leads_with_a_mark(text: str) -> bool:
    """Whether ``text`` starts with a combining mark (of no width of its own): rich lays such a
    cell out its own way, the mark joined to the padding before it."""
    import unicodedata

    return bool(text) and unicodedata.combining(text[0]) != 0


def _segments(head: list[list[Segment]], body: Iterator[str], bottom: list[Segment]) -> Iterator[Segment]:
    from rich.segment import Segment

    new_line = Segment.line()
    for segments in head:
        yield from segments
        yield new_line
    for text in body:
        yield Segment(text)
        yield new_line
    yield from bottom
    yield new_line
