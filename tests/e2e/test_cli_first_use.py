"""What a first-time user meets: the worker says what it runs, `jobs list` fits a terminal of
80 columns, and a sync into destination-devnull needs no config."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from typing import Any

from tests.e2e.test_cli_jobs import Cli, bench_connection, wait_for

LONG_NAME = "orders-from-the-production-postgres-into-the-analytics-warehouse-nightly"


def test_a_sync_into_devnull_needs_no_destination_config(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    bench = ["--source", "builtin:source-bench", "--source-config", '{"count": 7}']
    done = cli.json("sync", *bench, "--destination", "builtin:destination-devnull")
    assert done["records_emitted"] == 7
    cli("destinations", "create", "void", "--connector", "builtin:destination-devnull")
    assert cli.json("destinations", "show", "void")["config"] == {}
    # Any other destination still needs one, and says so.
    line = cli.bad_input("sync", *bench, "--destination", "builtin:destination-jsonl")
    assert "--destination-config is required with --destination builtin:destination-jsonl" in line


def test_jobs_list_fits_80_columns(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home", COLUMNS="80")
    bench_connection(cli, tmp_path, LONG_NAME, 5)
    cli("connections", "sync", LONG_NAME)
    lines = cli("jobs", "list").stdout.rstrip("\n").splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80, "\n".join(lines)
    header, _rule, *rows = (line for line in lines if line.strip())
    assert header.split() == ["id", "type", "scope", "status", "attempts", "created", "duration"]
    # One line per job, the long names cut with an ellipsis rather than wrapped.
    assert [row.split()[1:2] for row in rows] == [["sync"], ["discover"]]
    assert "…" in rows[0] and LONG_NAME[:8] in rows[0]
    assert "succeeded" in rows[0] and "succeeded" in rows[1]


def test_the_worker_prints_a_line_per_job_it_starts_and_ends(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    bench_connection(cli, tmp_path, "queued", 50)
    job_id = cli.json("connections", "sync", "queued", "--detach")["job"]["id"]
    worker = cli.start("worker")
    try:

        def ended() -> dict[str, Any] | None:
            job: dict[str, Any] = cli.json("jobs", "show", str(job_id))["job"]
            return job if job["status"] == "succeeded" else None

        wait_for(ended, f"job {job_id} to succeed on the worker")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = cli.finish(worker)
    assert worker.returncode == 0, stderr
    assert f"job {job_id} sync queued: started (attempt 0)" in stderr.splitlines()
    assert re.search(rf"^job {job_id} sync queued: succeeded in [0-9.]+s \(attempt 0\)$", stderr, re.M), (
        stderr
    )


def test_a_program_that_is_no_connector_is_told_by_what_it_printed(tmp_path: Path) -> None:
    # Pointed at the wrong program (or image), a user saw only "exited with code 0": what it
    # printed went to the attempt log alone.
    cli = Cli(tmp_path / "home")
    tool = tmp_path / "mytool"
    tool.write_text('#!/bin/sh\necho "mytool 2.1"\necho "usage: mytool [--verbose] FILE"\n')
    tool.chmod(0o755)
    result = cli("spec", f"exec:{tool}", code=1)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "produced no SPEC message" in lines[0]
    assert "printed 2 lines on stdout that are not Airbyte protocol" in lines[0]
    assert "'usage: mytool [--verbose] FILE'" in lines[0] and "Airbyte connector" in lines[0]

    (tmp_path / "config.json").write_text("{}")
    tool.write_text("#!/bin/sh\nprintf 'PK\\003\\004\\377\\376\\n'\n")  # binary, not text
    result = cli("check", f"exec:{tool}", "--config", str(tmp_path / "config.json"), code=1)
    assert "the last: 6 bytes that are not UTF-8 text" in result.stderr, result.stderr


def test_an_exec_connector_that_cannot_start_says_what_to_fix(tmp_path: Path) -> None:
    """The kernel's ENOENT names no interpreter, and "no such file" for a directory misleads: each
    case is one line that points at the fix."""
    cli = Cli(tmp_path / "home")
    assert cli.bad_input("spec", f"exec:{tmp_path}") == (
        f"error: exec:{tmp_path} is a directory; give a path to an executable file"
    )
    cases = {
        "interp.sh": (
            b"#!/no/such/python3 -u\n",
            "its interpreter was not found (first line: #!/no/such/python3 -u)",
        ),
        "plain.sh": (b"echo spec\n", "a script needs a #! first line"),
    }
    for name, (body, expected) in cases.items():
        script = tmp_path / name
        script.write_bytes(body)
        script.chmod(0o755)
        result = cli("spec", f"exec:{script}", code=1)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines[0].startswith("error: could not start the spec connector: "), lines[0]
        assert expected in lines[0], lines[0]
