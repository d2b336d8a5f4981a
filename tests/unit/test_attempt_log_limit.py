"""The attempt log's limit: connector lines past it are left out but for the last ones, while the
worker's own lines are written at once (a user following the log sees the stop, the failure)."""

from __future__ import annotations

from pathlib import Path

from ferryman.workers.attempt_log import TAIL_KEEP_LINES, AttemptLog

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
