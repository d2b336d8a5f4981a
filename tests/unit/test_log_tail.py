"""Reading attempt logs from their end, and following them without a gap or a repeat."""

from __future__ import annotations

from pathlib import Path

from ferryman.logtail import follow, tail_lines


def test_tail_reads_the_last_lines_of_a_large_log(tmp_path: Path) -> None:
    log = tmp_path / "logs.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(200_000)))
    lines, offset = tail_lines(log, 3)
    assert lines == ["line 199997", "line 199998", "line 199999"]
    assert offset == log.stat().st_size


def test_follow_picks_up_where_tail_stopped(tmp_path: Path) -> None:
    log = tmp_path / "logs.log"
    log.write_bytes(b"old 1\nold 2\nhalf a li")  # the engine is in the middle of a line
    lines, offset = tail_lines(log, 10)
    assert lines == ["old 1", "old 2"]
    with log.open("ab") as handle:
        handle.write(b"ne\nnew\n")
    assert list(follow(log, stop=lambda: True, start=offset)) == ["half a line", "new"]


def test_tail_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert tail_lines(tmp_path / "nope.log", 5) == ([], 0)


def test_a_tail_of_long_lines_stops_at_its_byte_budget_and_marks_the_cut_line(tmp_path: Path) -> None:
    log = tmp_path / "logs.log"
    log.write_bytes(b"".join(b"%04d " % i + b"x" * 60_000 + b"\n" for i in range(850)))  # ~51 MB
    lines, offset = tail_lines(log, 1000, max_bytes=1 << 20)
    assert sum(len(line) for line in lines) <= 1 << 20
    assert lines[-1].startswith("0849 ") and lines[0].startswith("…x")  # the first one is cut
    assert offset == log.stat().st_size
    short = tmp_path / "short.log"
    short.write_bytes(b"a\nb\nc\n")
    assert tail_lines(short, 1000, max_bytes=4) == (["b", "c"], 6)  # begins on a line: no mark
