"""A store the command cannot use, and input it cannot read: one line, exit 2, nothing touched.

The read-only and full stores need mounts: the tests run as root, where file modes do not stop
writes, so they mount a read-only bind or a small tmpfs, and skip when mounting is not allowed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.contract.private_postgres import private_cluster
from tests.e2e.test_cli_jobs import Cli, bench_connection, stream_state


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def mounted(target: Path, *args: str) -> Iterator[None]:
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    made = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"mount is not permitted here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


@contextlib.contextmanager
def read_only_view(source: Path, target: Path) -> Iterator[None]:
    with mounted(target, "--bind", str(source)):
        remount = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(target)], capture_output=True, text=True
        )
        assert remount.returncode == 0, remount.stderr
        yield


def test_a_damaged_store_file_is_one_line_even_for_jobs_list(cli: Cli) -> None:
    cli.home.mkdir()
    store = cli.home / "ferryman.db"
    store.write_bytes(bytes(range(256)) * 64)
    before = digest(store)
    for command in (["jobs", "list"], ["sources", "list"], ["connections", "sync", "c"]):
        line = cli.bad_input(*command)
        assert f"the store sqlite:///{store} cannot be used: file is not a database" in line, line
        assert "restore it from a backup" in line
    assert digest(store) == before


def test_an_unreachable_postgres_is_one_line_without_its_password(cli: Cli) -> None:
    cli.env["FERRYMAN_DATABASE_URL"] = "postgresql+psycopg://ferry:s3cret-pw@127.0.0.1:1/ferryman"
    line = cli.bad_input("jobs", "list")
    assert "the store postgresql+psycopg://ferry:***@127.0.0.1:1/ferryman cannot be used" in line
    assert "is it running" in line and "s3cret-pw" not in line


def test_a_postgres_store_whose_server_is_full_or_stopping_says_so_in_one_line(cli: Cli) -> None:
    """Every connection slot taken, or a server shutting down, passes on its own: the line says
    so and to run the command again (before: "cannot reach the database server: is it running,
    and is FERRYMAN_DATABASE_URL right?", pointing at a URL that was right). On a private cluster:
    the shared server's slots are everyone's."""
    with private_cluster() as cluster:
        cli.env["FERRYMAN_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/postgres"
        held = []
        while True:
            try:
                held.append(cluster.connect(autocommit=True))
            except psycopg.OperationalError:
                break
        try:
            line = cli.bad_input("jobs", "list")
        finally:
            for conn in held[1:]:
                conn.close()
        assert (
            "FATAL: sorry, too many clients already; the database server has every connection slot taken"
            in line
        )
        assert "run it again once other sessions end" in line and "is it running" not in line
        cluster.stop("smart")  # held[0] keeps it shutting down, not down
        for _ in range(10_000):  # the postmaster takes the signal in its own time
            try:
                cluster.connect().close()
            except psycopg.OperationalError:
                break
        line = cli.bad_input("jobs", "list")
        held[0].close()
    assert (
        "the database system is shutting down; the database server is starting, stopping or recovering"
        in line
    )
    assert "is it running" not in line


def test_a_read_only_store_still_answers_reads_and_refuses_writes_in_one_line(
    cli: Cli, tmp_path: Path
) -> None:
    bench_connection(cli, tmp_path, "c", 5)
    jobs = cli.json("jobs", "list")["jobs"]
    view = Cli(tmp_path / "read-only")
    with read_only_view(cli.home, view.home):
        before = digest(view.home / "ferryman.db")
        assert view.json("jobs", "list")["jobs"] == jobs
        assert [c["name"] for c in view.json("connections", "list")["connections"]] == ["c"]
        line = view.bad_input("state", "set", "c", json.dumps([stream_state("stream_0", 1)]))
        assert "cannot be used: attempt to write a readonly database; it is read-only here" in line
        assert "read-only" in view.bad_input("connections", "delete", "c")
        assert "read-only" in view.bad_input("connections", "sync", "c")
        assert digest(view.home / "ferryman.db") == before
    assert cli.json("state", "show", "c")["state"] == []


def test_a_full_disk_under_the_store_is_one_line_and_keeps_what_is_stored(tmp_path: Path) -> None:
    home = tmp_path / "small"
    with mounted(home, "-t", "tmpfs", "-o", "size=2m", "tmpfs"):
        cli = Cli(home)
        cli("sources", "create", "kept", "--connector", "builtin:source-bench", "--config", "{}")
        with contextlib.suppress(OSError), (home / "filler").open("wb") as filler:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        # SQLite needs a little room even to open the store (its shared-memory file), so a
        # read fails as a write does: one line naming the store, and the disk.
        for command in (["sources", "delete", "kept"], ["jobs", "list"]):
            line = cli.bad_input(*command)
            assert f"the store sqlite:///{home}/ferryman.db cannot be used" in line, line
            assert "disk is full" in line or "is the disk full" in line, line
        (home / "filler").unlink()
        assert [s["name"] for s in cli.json("sources", "list")["sources"]] == ["kept"]


def test_bad_documents_are_one_line(cli: Cli, tmp_path: Path) -> None:
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"count": 1, "name": "caf\xe9"}')
    assert "not UTF-8 text" in cli.bad_input(
        "sources", "create", "s", "--connector", "builtin:source-bench", "--config", str(latin)
    )
    laughs = tmp_path / "laughs.yaml"
    laughs.write_text(
        "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(
            f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
    )
    assert "billion laughs" in cli.bad_input(
        "sources", "create", "s", "--connector", "builtin:source-bench", "--config", str(laughs)
    )
    bench_connection(cli, tmp_path, "c", 5)
    cli("state", "set", "c", json.dumps([stream_state("stream_0", 3)]))
    not_an_object = {
        "type": "STREAM",
        "stream": {"stream_descriptor": {"name": "stream_0"}, "stream_state": 3},
    }
    assert "stream_state of 'stream_0' must be an object or null" in cli.bad_input(
        "state", "set", "c", json.dumps([not_an_object])
    )
    malformed = {"type": "STREAM", "stream": "stream_0"}
    assert "must be an object" in cli.bad_input("state", "set", "c", json.dumps(malformed))
    assert cli.json("state", "show", "c")["state"] == [stream_state("stream_0", 3)]
    assert "no job 99999999999999999999999" in cli.bad_input("jobs", "show", "99999999999999999999999")
