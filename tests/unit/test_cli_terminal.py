"""What the CLI prints for people holds a connector's text as it reads: no markup interpreted,
control characters shown (see docs/cli.md, "Text from connectors and users"). The commands are
driven end to end in tests/e2e/test_cli_untrusted_text.py; here the progress displays, whose
lines appear only while a sync runs long enough to report progress."""

from __future__ import annotations

import io
import re

from ferryman.cli.common import out
from ferryman.cli.progress import LiveProgress, PlainProgress
from ferryman.workers.models import StreamStats, SyncProgress

STREAM = "us[/]ers\x1b]0;PWNED\x07\x1b[2J\x9b\u202e"
SHOWN = r"us[/]ers\x1b]0;PWNED\x07\x1b[2J\x9b\u202e"


def progress() -> SyncProgress:
    return SyncProgress(12.0, [StreamStats(STREAM, None, records_emitted=1200)], states_committed=0)


def test_a_progress_line_shows_a_stream_name_as_it_reads() -> None:
    printed = io.StringIO()
    display = PlainProgress(printed, 0)
    display(progress())
    assert f"; {SHOWN} 1,200" in printed.getvalue()
    assert not any(char in printed.getvalue() for char in "\x1b\x07\x9b\u202e")


def test_the_live_progress_table_shows_a_stream_name_as_it_reads() -> None:
    """On a terminal (where rich writes escape sequences of its own: cursor moves, colours)."""
    printed = io.StringIO()
    console = type(out())(file=printed, force_terminal=True, width=120)
    display = LiveProgress(console)
    display(progress())
    display.close()
    text = printed.getvalue()
    assert SHOWN in text
    assert not any(raw in text for raw in ("PWNED\x07", "\x1b[2J", "\x9b", "\u202e"))


def many_streams() -> SyncProgress:
    """A source of thousands of tables, read one after another: 40 done, one being read."""
    streams = [StreamStats(f"table_{i}", None, records_emitted=10, status="COMPLETE") for i in range(40)]
    streams.append(StreamStats("table_40", None, records_emitted=3, status="RUNNING"))
    streams += [StreamStats(f"table_{i}", None) for i in range(41, 5_000)]
    return SyncProgress(30.0, streams, states_committed=0)


def test_a_progress_line_of_thousands_of_streams_names_a_few_and_counts_the_rest() -> None:
    printed = io.StringIO()
    PlainProgress(printed, 0)(many_streams())
    line = printed.getvalue()
    assert len(line) < 300, line  # it was one line naming all 5,000 streams
    assert line.startswith("sync 30s: 403 records")
    assert "table_40 3" in line  # the stream being read is named
    assert "4,995 more streams 360" in line  # the others counted, their records summed


def test_the_live_progress_table_of_thousands_of_streams_fits_a_terminal() -> None:
    printed = io.StringIO()
    console = type(out())(file=printed, force_terminal=True, width=120, height=40)
    display = LiveProgress(console)
    display(many_streams())
    display.close()
    text = printed.getvalue()
    assert "table_40" in text
    assert "table_4999" not in text
    assert "(4,985 more streams)" in text
    assert len(set(re.findall(r"table_\d+", text))) == 15  # the rows named: 15 of 5,000
