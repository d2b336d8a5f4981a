"""What the CLI prints for people holds a connector's text as it reads: no markup interpreted,
control characters shown (see docs/cli.md, "Text from connectors and users"). The commands are
driven end to end in tests/e2e/test_cli_untrusted_text.py; here the progress displays, whose
lines appear only while a sync runs long enough to report progress."""

from __future__ import annotations

import io

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
