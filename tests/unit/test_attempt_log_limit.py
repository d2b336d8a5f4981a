"""The attempt log's limit: connector lines past it are left out but for the last ones, while the
worker's own lines are written at once (a user following the log sees the stop, the failure)."""

from __future__ import annotations

from pathlib import Path

from ferryman.workers.attempt_log import TAIL_KEEP_BYTES, TAIL_KEEP_LINES, AttemptLog, recover_tail, tail_path

LIMIT = 1 << 20


def _lines(path: Path) -> list[str]:
    return [line.split(" ", 2)[2] for line in path.read_text().splitlines()]  # past the stamp


def test_past_the_limit_our_lines_are_written_at_once_and_the_connectors_last_ones_at_the_end(
    tmp_path: Path,
) -> None:
    path = tmp_path / "logs.log"
    log = AttemptLog(path, ["s3cr3t"], limit_bytes=LIMIT)
    for i in range(20_000):
        log.info("source", f"chatter {i} with s3cr3t {'x' * 100}")
    log.error("worker", "source failure (system_error): the source exited with code 1")
    platform = AttemptLog(path)  # the engine's own instance, without a limit
    platform.info("platform", "a line of the engine's")
    platform.close()
    written = _lines(path)
    assert written[-2:] == [
        "worker ERROR source failure (system_error): the source exited with code 1",
        "platform INFO a line of the engine's",
    ]
    assert not any("chatter 19999" in line for line in written)  # held until the connectors are done
    log.info("source", "last words")
    log.close()
    log.info("source", "after the close: not written")
    written = _lines(path)
    assert path.stat().st_size < LIMIT + (64 << 10)
    assert written[0].startswith("source INFO chatter 0 with ****")
    assert sum("reached its limit of 1 MiB (FERRYMAN_MAX_ATTEMPT_LOG_MB)" in line for line in written) == 1
    [note] = [line for line in written if "left out of this log" in line]
    tail = written[written.index(note) + 1 :]
    assert len(tail) == TAIL_KEEP_LINES and tail[-1] == "source INFO last words"
    assert tail[-2].startswith("source INFO chatter 19999 with ****")
    kept = sum(line.startswith("source INFO chatter") for line in written)  # of 20,000
    assert note.startswith(f"worker WARN {20_000 - kept} line(s) (")
    assert "s3cr3t" not in path.read_text() and log.lost_lines() is None  # left out is not lost


def test_without_a_limit_every_line_is_written(tmp_path: Path) -> None:
    path = tmp_path / "logs.log"
    log = AttemptLog(path, limit_bytes=0)
    for i in range(20_000):
        log.info("source", f"chatter {i} {'x' * 100}")
    log.close()
    assert len(_lines(path)) == 20_000 and path.stat().st_size > 2 * LIMIT


def test_the_last_lines_of_a_worker_that_never_closed_its_log_are_recovered(tmp_path: Path) -> None:
    """A SIGKILLed worker never writes its ring: the file beside the log keeps it, bounded, and
    the recovery moves its last lines (masked already) to the log's end, once."""
    path = tmp_path / "logs.log"
    log = AttemptLog(path, ["s3cr3t"], limit_bytes=LIMIT)
    for i in range(30_000):
        log.info("source", f"chatter {i} with s3cr3t {'x' * 100}")
    log.info("source", "last words")
    assert tail_path(path).stat().st_size <= 2 * TAIL_KEEP_BYTES  # rewritten with the ring, not grown
    before = path.read_text()
    assert "last words" not in before

    # The worker dies here: no close, no flush_tail. The engine that recovers the attempt:
    assert recover_tail(path) is True
    written = _lines(path)
    [note] = [line for line in written if "the worker ended before writing" in line]
    tail = written[written.index(note) + 1 :]
    assert len(tail) == TAIL_KEEP_LINES and tail[-1] == "source INFO last words"
    assert tail[-2].startswith("source INFO chatter 29999 with ****")
    assert "s3cr3t" not in path.read_text()
    assert not tail_path(path).exists()
    assert recover_tail(path) is False and _lines(path) == written  # once


def test_a_log_closed_as_usual_leaves_no_ring_file_and_nothing_to_recover(tmp_path: Path) -> None:
    path = tmp_path / "logs.log"
    log = AttemptLog(path, limit_bytes=LIMIT)
    for i in range(20_000):
        log.info("source", f"chatter {i} {'x' * 100}")
    assert tail_path(path).exists()
    log.close()
    assert not tail_path(path).exists()
    written = path.read_text()
    assert recover_tail(path) is False and path.read_text() == written


def test_a_line_the_kill_cut_mid_write_is_not_recovered_half(tmp_path: Path) -> None:
    path = tmp_path / "logs.log"
    path.write_text("2026-01-01 00:00:00.000 worker INFO attempt 0 started\n")
    whole, cut = b"2026-01-01 00:00:01.000 source INFO whole\n", b"2026-01-01 00:00:01.001 source INFO ha"
    tail_path(path).write_bytes(whole + cut)
    assert recover_tail(path) is True
    assert _lines(path)[-1] == "source INFO whole"
