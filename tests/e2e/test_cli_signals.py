"""A hostile user's signals at each step of a command, and what is true afterwards.

Each test interrupts a real ``python -m ferryman`` process (Ctrl-C to its process group as a
terminal sends it, SIGTERM, SIGKILL) at a point it waits for on a file, then checks that nothing
committed is lost, nothing is reported that did not happen, and nothing is left running.
"""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import watchdogs_of
from tests.e2e.api_server import running_server
from tests.e2e.test_cli_jobs import Cli, wait_for
from tests.e2e.test_cli_wedged import configs_left, gone, paused_connection


def refuses(url: str) -> bool:
    """Whether nothing listens any more at ``url``'s host and port."""
    where = urlsplit(url)
    try:
        socket.create_connection((where.hostname, where.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_sync_whose_watchdog_is_killed_still_ends_correctly(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    started, release = paused_connection(cli, tmp_path, [{"records": 5}, {"state": {"name": "users"}}])
    sync = cli.start("connections", "sync", "conn", "--json")
    wait_for(started.exists, "the source to start")
    (watchdog,) = watchdogs_of(sync.pid)
    watchdog.kill()
    wait_for(lambda: gone(watchdog.pid), "the watchdog to die")  # a zombie until the sync ends
    release.touch()
    stdout, stderr = cli.finish(sync)

    assert sync.returncode == 0, stderr
    assert json.loads(stdout)["job"]["status"] == "succeeded"
    (job,) = cli.json("jobs", "list", "--type", "sync")["jobs"]
    attempts = cli.json("jobs", "show", str(job["id"]))["attempts"]
    assert [a["status"] for a in attempts] == ["succeeded"]
    assert sum(s["records_committed"] for s in attempts[0]["streams"]) == 10
    assert configs_left(cli.home) == []


def test_ctrl_c_twice_at_a_server_with_a_sync_running_cancels_it(tmp_path: Path) -> None:
    """The second Ctrl-C, pressed before the web part has stopped, is the one that cancels."""
    home = tmp_path / "home"
    cli = Cli(home)
    started, _ = paused_connection(cli, tmp_path, [])  # never released: only a cancel ends it
    with running_server(home) as server:
        job_id = cli.json("connections", "sync", "conn", "--detach")["job"]["id"]
        wait_for(started.exists, "the server's engine to start the source")
        source_pid = int(started.read_text())
        server.process.send_signal(signal.SIGINT)
        # A person's second press comes after the first was taken. Taken means Python's handler
        # ran, not only the kernel's delivery: a second SIGINT that lands before the handler has run
        # is merged with the first (CPython keeps one "tripped" flag per signal). The web part closing
        # its port is the first sign that the handler ran; the web part is still stopping then.
        wait_for(lambda: refuses(server.url), "the web part to take the first Ctrl-C and close its port")
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=60) == 0
    log = (home / "server.log").read_text()
    assert "cancelling the running attempts" in log, log
    assert gone(source_pid)
    shown = cli.json("jobs", "show", str(job_id))
    assert shown["job"]["status"] == "cancelled"
    assert [f["type"] for f in shown["attempts"][-1]["failures"]] == ["manual_cancellation"]
    assert configs_left(home) == []
