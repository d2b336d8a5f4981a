"""Sync progress for people: a live table on a terminal, a plain line every few seconds otherwise.

Fed either by the worker's progress callback (ad-hoc ``ferryman sync``) or by polling the
store's per-stream stats of the running attempt (``ferryman connections sync``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING, TextIO

from ferryman.printable import visible

if TYPE_CHECKING:
    from rich.console import Console

    from ferryman.store.base import StreamStat
    from ferryman.workers.models import StreamStats, SyncProgress


def _rate(records: int, elapsed_s: float) -> float:
    return records / elapsed_s if elapsed_s > 0 else 0.0


def _percent(stream: StreamStats) -> str:
    if not stream.estimated_records:
        return ""
    return f"{min(100.0, 100.0 * stream.records_emitted / stream.estimated_records):.0f}%"


def _committed(progress: SyncProgress) -> str:
    counts = [s.records_committed for s in progress.streams]
    return "?" if any(c is None for c in counts) else f"{sum(c or 0 for c in counts):,}"


# How many streams a display names; a source of thousands of tables would otherwise make the
# plain line a hundred kilobytes and the live table taller than any terminal.
LINE_STREAMS = 5
TABLE_STREAMS = 15
_DONE = ("COMPLETE", "INCOMPLETE")


def shown_streams(streams: list[StreamStats], limit: int) -> tuple[list[StreamStats], list[StreamStats]]:
    """The streams to name (at most ``limit``, in their order) and the rest. Past the limit, the
    streams being read come first (a status other than done, or records without a status), then
    those with the most records."""
    if len(streams) <= limit:
        return streams, []

    def rank(item: tuple[int, StreamStats]) -> tuple[bool, int, int]:
        at, stream = item
        reading = stream.status not in _DONE and (stream.status is not None or stream.records_emitted > 0)
        return (not reading, -stream.records_emitted, at)

    chosen = {at for at, _ in sorted(enumerate(streams), key=rank)[:limit]}
    shown = [stream for at, stream in enumerate(streams) if at in chosen]
    rest = [stream for at, stream in enumerate(streams) if at not in chosen]
    return shown, rest


def _more(rest: list[StreamStats]) -> str:
    records = sum(s.records_emitted for s in rest)
    return f"{len(rest):,} more streams {records:,}"


def from_stream_stats(stats: list[StreamStat], elapsed_s: float) -> SyncProgress:
    """A progress snapshot from the stats an engine saved for the running attempt."""
    from ferryman.workers.models import StreamStats, SyncProgress  # the workers package: not at --help

    streams = [StreamStats(**s.figures()) for s in stats]
    return SyncProgress(elapsed_s, streams, states_committed=0)


class LiveProgress:
    """A table per stream on a terminal: records, rate, percent of the estimate, committed.

    Rich is imported here, not at the top: a sync that prints JSON off a terminal never loads it."""

    def __init__(self, console: Console) -> None:
        from rich.live import Live

        self._live = Live(console=console, auto_refresh=False, transient=True)  # the summary follows
        self._started = False

    def __call__(self, progress: SyncProgress) -> None:
        from rich.table import Table

        if not self._started:
            self._live.start()
            self._started = True
        table = Table(title=f"sync {progress.elapsed_s:,.0f}s", title_justify="left")
        for column in ("stream", "records", "rate/s", "done", "committed"):
            table.add_column(column, justify="left" if column == "stream" else "right")
        shown, rest = shown_streams(progress.streams, TABLE_STREAMS)
        for stream in shown:
            committed = stream.records_committed
            table.add_row(
                stream.name,
                f"{stream.records_emitted:,}",
                f"{_rate(stream.records_emitted, progress.elapsed_s):,.0f}",
                _percent(stream),
                "?" if committed is None else f"{committed:,}",
            )
        if rest:
            records = sum(s.records_emitted for s in rest)
            counts = [s.records_committed for s in rest]
            committed_rest = "?" if any(c is None for c in counts) else f"{sum(c or 0 for c in counts):,}"
            table.add_row(
                f"({len(rest):,} more streams)",
                f"{records:,}",
                f"{_rate(records, progress.elapsed_s):,.0f}",
                "",
                committed_rest,
            )
        self._live.update(table, refresh=True)

    def close(self) -> None:
        if self._started:
            self._live.stop()


class PlainProgress:
    """One line on stderr every ``interval_s`` seconds, for logs and CI."""

    def __init__(self, stream: TextIO, interval_s: float) -> None:
        self._stream = stream
        self._interval_s = interval_s
        self._next = time.monotonic() + interval_s

    def __call__(self, progress: SyncProgress) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._interval_s
        total = progress.records_emitted
        shown, rest = shown_streams(progress.streams, LINE_STREAMS)
        parts = [
            f"{s.name} {s.records_emitted:,}" + (f" ({_percent(s)})" if _percent(s) else "") for s in shown
        ]
        if rest:
            parts.append(_more(rest))
        line = (
            f"sync {progress.elapsed_s:,.0f}s: {total:,} records "
            f"({_rate(total, progress.elapsed_s):,.0f}/s), {_committed(progress)} committed; "
            + ", ".join(parts)
        )
        print(visible(line), file=self._stream, flush=True)  # stream names come from the source

    def close(self) -> None:
        pass


def progress_display(console: Console) -> LiveProgress | PlainProgress:
    if console.is_terminal and sys.stderr.isatty():
        return LiveProgress(console)
    interval = float(os.environ.get("FERRYMAN_PROGRESS_INTERVAL_S") or 5)
    return PlainProgress(sys.stderr, interval)
