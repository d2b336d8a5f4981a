"""A connection of many streams into destination-postgres, killed mid-sync as a user meets it.

Each test drives ``python -m ferryman connections sync`` (the foreground worker on the SQLite
store, local processes) from source-bench into a database of its own, with at most 3 streams
per destination transaction (``FERRYMAN_POSTGRES_STREAMS_PER_TRANSACTION``), so a dozen streams
cross that limit several times. The kill point is reached without timing: a session of the test
holds a lock on one stream's table, and the destination waits on it. What is checked is what the
user would find: the job's outcome, the rows of every stream against the source's ids (none
missing, none twice), the saved state against the rows, no connector left running, and the next
sync bringing every table to exactly the source's records.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from tests.contract.destination_support import pg_database  # noqa: F401 (a fixture)
from tests.contract.store_support import PG_HOST, PG_PORT, PG_USER
from tests.e2e.test_cli_jobs import Cli, wait_for
from tests.e2e.test_cli_wedged import configs_left, gone

STREAMS = [f"stream_{i}" for i in range(12)]
BLOCKED = "stream_7"  # with 3 streams per transaction: 0-5 are committed before it, 6-8 with it


def _connection(cli: Cli, database: str, mode: str, count: int) -> None:
    source = {"streams": len(STREAMS), "count": count, "state_every": 20, "record_size": 100}
    cli("sources", "create", "src", "--connector", "builtin:source-bench", "--config", json.dumps(source))
    destination = {"host": PG_HOST, "port": PG_PORT, "database": database, "username": PG_USER}
    cli("destinations", "create", "dst", "--connector", "builtin:destination-postgres", "--config",
        json.dumps(destination))  # fmt: skip
    each = [f"--stream={name}:incremental:{mode}" for name in STREAMS]
    modes = ["--full-refresh"] if mode == "overwrite" else each
    cli("connections", "create", "conn", "--source", "src", "--destination", "dst", *modes)


def _ids(database: str) -> dict[str, list[int]]:
    """The ids stored in each stream's table, sorted (a duplicate shows twice)."""
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database) as conn:
        return {
            name: sorted(row[0] for row in conn.execute(f'SELECT id FROM public."{name}"'))
            for name in STREAMS
        }


def _saved(cli: Cli) -> dict[str, int]:
    """The last id each stream's saved state covers (0: no state)."""
    states = json.loads(cli("state", "show", "conn").stdout)
    found = {name: 0 for name in STREAMS}
    for state in states:
        stream = state["stream"]
        found[stream["stream_descriptor"]["name"]] = stream["stream_state"]["id"]
    return found


def _waiting_on_a_lock(database: str) -> bool:
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'destination-postgres'"
            " AND wait_event_type = 'Lock'"
        ).fetchone()
        return bool(row and row[0])


def _connectors(sync: Any) -> list[psutil.Process]:
    return psutil.Process(sync.pid).children(recursive=True)


def _every_record_once(database: str, count: int) -> None:
    ids = _ids(database)
    wrong = {name: len(found) for name, found in ids.items() if found != list(range(1, count + 1))}
    assert wrong == {}, f"rows per stream that are not ids 1..{count}, each once: {wrong}"


@pytest.mark.slow
def test_an_overwrite_killed_between_the_swaps_of_its_last_commit_stores_each_record_once(
    tmp_path: Path,
    pg_database: str,  # noqa: F811
) -> None:
    """The last commit swaps 12 staging tables in, 3 per transaction; a reader of stream_7's
    table holds it up after 6 are swapped, and the destination is SIGKILLed there. Before, that
    commit's first transaction also held the records of the last streams read (9-11) without
    their states echoed: the retry read them again into their staging tables, which then held
    each record twice. And source-bench read a full-refresh stream from its start whatever state
    the retry gave it: every stream ended twice over."""
    cli = Cli(
        tmp_path / "home", FERRYMAN_POSTGRES_STREAMS_PER_TRANSACTION="3", FERRYMAN_RETRY_BACKOFF_MIN_S="0"
    )
    _connection(cli, pg_database, "overwrite", count=50)
    cli("connections", "sync", "conn")  # the tables, to be replaced by the next sync
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=pg_database) as reader:
        reader.execute(f'LOCK TABLE public."{BLOCKED}" IN ACCESS SHARE MODE')  # its DROP waits
        sync = cli.start("connections", "sync", "conn", "--json")
        wait_for(lambda: _waiting_on_a_lock(pg_database), "the destination to wait for the reader")
        (destination,) = [p for p in _connectors(sync) if "write" in p.cmdline()]
        destination.kill()
        destination.wait()
        reader.rollback()
    stdout, stderr = cli.finish(sync)

    assert sync.returncode == 0, stderr
    _every_record_once(pg_database, 50)
    attempts = cli.json("jobs", "show", str(json.loads(stdout)["job"]["id"]))["attempts"]
    assert [a["status"] for a in attempts] == ["failed", "succeeded"]
    assert "the destination was killed by signal 9" in attempts[0]["failures"][0]["message"]
    assert configs_left(cli.home) == []


@pytest.mark.slow
@pytest.mark.parametrize("kill", ["ctrl_c", "sigkill"])
def test_an_append_sync_stopped_mid_stream_keeps_exactly_what_its_saved_state_covers(
    tmp_path: Path,
    pg_database: str,  # noqa: F811
    kill: str,
) -> None:
    """The second sync reads ids 31..60 of each stream; the destination waits on a reader's lock
    in stream_7's table after streams 0-5 are committed and echoed. The `ferryman` running it is
    interrupted (Ctrl-C) or SIGKILLed once the store holds their states. Every stream then holds
    exactly the ids its saved state covers, no connector is left, and the next sync appends the
    rest, each record once."""
    cli = Cli(tmp_path / "home", FERRYMAN_POSTGRES_STREAMS_PER_TRANSACTION="3", FERRYMAN_CANCEL_GRACE_S="2")
    _connection(cli, pg_database, "append", count=30)
    cli("connections", "sync", "conn")
    cli("sources", "update", "src", "--merge", '{"count": 60}')
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=pg_database) as reader:
        reader.execute(f'LOCK TABLE public."{BLOCKED}" IN SHARE MODE')  # its COPY waits
        sync = cli.start("connections", "sync", "conn")
        wait_for(lambda: _waiting_on_a_lock(pg_database), "the destination to wait for the reader")
        wait_for(lambda: all(_saved(cli)[f"stream_{i}"] == 60 for i in range(6)), "streams 0-5 saved")
        connectors = _connectors(sync)
        if kill == "ctrl_c":
            sync.send_signal(signal.SIGINT)
            _, stderr = cli.finish(sync)
            assert sync.returncode == 1, stderr
        else:
            sync.kill()
            cli.finish(sync)
        wait_for(lambda: all(gone(p.pid) for p in connectors), "the connectors to be stopped")
        reader.rollback()

    (job, _) = cli.json("jobs", "list", "--type", "sync")["jobs"]
    assert job["status"] == ("cancelled" if kill == "ctrl_c" else "failed")
    saved = _saved(cli)
    assert [saved[f"stream_{i}"] for i in range(6)] == [60] * 6
    stored = _ids(pg_database)
    assert {name: stored[name] for name in STREAMS} == {
        name: list(range(1, saved[name] + 1)) for name in STREAMS
    }, "what is stored is what the saved state covers, each once"
    assert configs_left(cli.home) == []

    cli("connections", "sync", "conn")
    _every_record_once(pg_database, 60)
