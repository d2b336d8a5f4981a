"""A connector's ``docker run`` client SIGKILLed while its container runs on.

The engine closes a container's stdin as its client's connection drops (``docker run -i``), so a
destination takes the client's death for the end of its input and commits what it holds, while
nobody reads the states it echoes: the retry sends those records again. The worker now kills the
container the moment it sees the client dead, whatever else it is doing.

Needs a Docker engine, the scripted test images (tests/images/build.py) and PostgreSQL: the store
is a database of the test's own, whose attempt rows the test locks so that the worker is busy (its
progress save waits on the lock) when the client dies; the old code killed the container only
once that save returned. The scripted destination commits once, at the end of its input, and
pauses after a number of records until the test lets it read on, so the moment it could commit
is the test's to choose, not a race.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from tests import docker_support
from tests.contract.store_support import PG_HOST, PG_PORT, PG_USER, fresh_database
from tests.e2e.test_cli_jobs import Cli, wait_for
from tests.images.build import image

COUNT = 20_000  # records: more than the pipes between worker and container hold
PAUSE_AFTER = 2_000
STREAM = "--stream=stream_0:incremental:append"


def _running(store_label: str) -> list[str]:
    """Ids of the running destination containers of the test's store."""
    filters = ["--filter", f"label={store_label}", "--filter", "label=io.ferryman.role=destination"]
    listed = subprocess.run(["docker", "ps", "--quiet", *filters], capture_output=True, text=True, check=True)
    return listed.stdout.split()


def _waiting_on_a_lock(database: str) -> bool:
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (database,),
        ).fetchone()
        return bool(row and row[0])


def _ids(path: Path) -> Counter[int]:
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(json.loads(line)["record"]["data"]["id"] for line in lines)


def _client(sync: subprocess.Popen[str], role: str) -> psutil.Process:
    """The `docker run` client of the sync's ``role``."""
    (client,) = [
        p
        for p in psutil.Process(sync.pid).children(recursive=True)
        if p.cmdline()[1:2] == ["run"] and f"io.ferryman.role={role}" in p.cmdline()
    ]
    return client


@pytest.mark.slow
def test_a_destination_whose_docker_client_is_killed_commits_nothing_the_retry_sends_again(
    tmp_path: Path,
) -> None:
    docker_support.require_docker("scripted-destination")
    with fresh_database("postgres", tmp_path) as store_url:
        database = store_url.rsplit("/", 1)[1]
        cli = Cli(tmp_path / "home", FERRYMAN_RETRY_BACKOFF_MIN_S="0")
        cli.env["FERRYMAN_DATABASE_URL"] = store_url  # Cli leaves the caller's out
        local = cli.home / "local"
        source = {"count": COUNT, "state_every": 500}
        cli("sources", "create", "src", "--connector", "builtin:source-bench", "--config", json.dumps(source))
        destination = {
            "output": "/local/out.jsonl",
            "hold_until_end": True,
            "pause_after_records": PAUSE_AFTER,
            "resume_file": "/local/resume",
        }
        connector = f"docker:{image('scripted-destination')}"
        cli("destinations", "create", "dst", "--connector", connector, "--config", json.dumps(destination))
        cli("connections", "create", "conn", "--source", "src", "--destination", "dst", STREAM)
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database) as holder:
            sync = cli.start("connections", "sync", "conn", "--json")
            staged = local / "out.jsonl.staged"
            wait_for(lambda: staged.exists() and len(staged.read_bytes().splitlines()) >= PAUSE_AFTER,
                     "the destination to pause")  # fmt: skip
            # The worker's next progress save waits behind this lock: it is busy with the store.
            holder.execute("SELECT id FROM attempts FOR UPDATE")
            wait_for(lambda: _waiting_on_a_lock(database), "the worker to wait on the store")
            client = _client(sync, "destination")
            store_label = next(arg for arg in client.cmdline() if arg.startswith("io.ferryman.store="))
            client.kill()
            # The container must go while the worker still waits on the store (at once, now).
            # The old code killed it only after that save: it ran on for as long as the lock
            # was held. 20 s bounds the wait for the old code; the rows below say what it did.
            with contextlib.suppress(AssertionError):
                wait_for(lambda: not _running(store_label), "the container to be killed", 20)
            (local / "resume").touch()  # a live container now reads to its end and commits
            committed = local / "out.jsonl"
            wait_for(lambda: committed.exists() or not _running(store_label), "a commit, or no container")
            holder.rollback()
        stdout, stderr = cli.finish(sync)

        assert sync.returncode == 0, stderr
        ids = _ids(local / "out.jsonl")
        twice = sorted(i for i, n in ids.items() if n > 1)
        assert twice == [], f"{len(twice)} records stored twice (the killed client's container committed)"
        assert set(ids) == set(range(1, COUNT + 1))
        attempts: list[dict[str, Any]] = cli.json("jobs", "show", str(json.loads(stdout)["job"]["id"]))[
            "attempts"
        ]
        assert [a["status"] for a in attempts] == ["failed", "succeeded"]
        failure = attempts[0]["failures"][0]
        assert failure["origin"] == "destination"
        assert "docker run client of the destination was killed (SIGKILL)" in failure["message"]
        assert docker_support.containers(store_label) == []  # none left, running or not


@pytest.mark.slow
def test_a_source_whose_docker_client_is_killed_is_killed_too_and_the_retry_resumes(tmp_path: Path) -> None:
    """The source's container outlives its client: it is killed at once and removed, the attempt
    fails naming the client, and the retry resumes from what the destination confirmed."""
    docker_support.require_docker("source-bench")
    cli = Cli(tmp_path / "home", FERRYMAN_RETRY_BACKOFF_MIN_S="0")
    count = 400_000  # long enough to be killed mid-stream
    source = {"count": count, "state_every": 1000}
    connector = f"docker:{image('source-bench')}"
    cli("sources", "create", "src", "--connector", connector, "--config", json.dumps(source))
    out = tmp_path / "out"
    cli("destinations", "create", "dst", "--connector", "builtin:destination-jsonl", "--config",
        json.dumps({"path": str(out)}))  # fmt: skip
    cli("connections", "create", "conn", "--source", "src", "--destination", "dst", STREAM)
    sync = cli.start("connections", "sync", "conn", "--json")
    rows = out / "stream_0.jsonl"
    wait_for(lambda: rows.exists() and rows.stat().st_size > 0, "the first committed rows")
    client = _client(sync, "source")
    store_label = next(arg for arg in client.cmdline() if arg.startswith("io.ferryman.store="))
    client.kill()
    stdout, stderr = cli.finish(sync, timeout=300)

    assert sync.returncode == 0, stderr
    ids = Counter(json.loads(line)["id"] for line in rows.read_text().splitlines())
    assert ids == Counter(range(1, count + 1))  # each once: the retry resumed from the last state
    attempts = cli.json("jobs", "show", str(json.loads(stdout)["job"]["id"]))["attempts"]
    assert [a["status"] for a in attempts] == ["failed", "succeeded"]
    messages = [f["message"] for f in attempts[0]["failures"] if f["origin"] == "source"]
    assert any("docker run client of the source was killed (SIGKILL)" in m for m in messages), messages
    assert docker_support.containers(store_label) == []  # none left, running or not
