"""destination-postgres refused by its server: retried when the refusal passes, not when it is the config's.

Every fault here is driven on a private cluster (max_connections 5) the test starts itself,
never on the shared server: its connection slots held, its shutdown begun, its port closed, a
database it does not have. What a user sees is the TRACE error the destination ends with: one
line, its failure type (``transient_error`` is retried, ``config_error`` is not), and never the
password or the url.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from tests.contract.destination_support import (
    command,
    complete,
    echoed,
    messages_in,
    parse,
    record,
    state,
    stream,
)
from tests.contract.private_postgres import PrivateCluster, _free_port, private_cluster

SECRET = "hunter2-secret"


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    # Two slots for superusers only: a role of the user's meets "remaining connection slots are
    # reserved" once three sessions are open, a superuser "too many clients" at five.
    with private_cluster("superuser_reserved_connections=2") as started:
        with started.connect(autocommit=True) as conn:
            conn.execute(f"CREATE ROLE loader LOGIN PASSWORD '{SECRET}'")
        yield started


def _config(tmp_path: Path, body: dict[str, Any]) -> Path:
    path = tmp_path / "config.json"
    path.write_bytes(orjson.dumps(body))
    return path


def _url(
    cluster: PrivateCluster, user: str = "loader", port: int | None = None, dbname: str = "postgres"
) -> dict[str, Any]:
    return {
        "url": f"postgresql://{user}:{SECRET}@{cluster.host}:{port or cluster.port}/{dbname}?sslmode=disable"
    }


def _fields(cluster: PrivateCluster, **changes: Any) -> dict[str, Any]:
    body = {
        "host": cluster.host, "port": cluster.port, "database": "postgres", "username": "loader",
        "password": SECRET, "ssl_mode": "disable",
    }  # fmt: skip
    return {**body, **changes}


def _write(
    tmp_path: Path, body: dict[str, Any]
) -> tuple[subprocess.CompletedProcess[bytes], list[dict[str, Any]]]:
    catalog = tmp_path / "catalog.json"
    catalog.write_bytes(orjson.dumps({"streams": [stream("users", {"id": {"type": "integer"}})]}))
    done = subprocess.run(
        command("destination_postgres", "write", "--config", _config(tmp_path, body), "--catalog", catalog),
        input=messages_in(record("users", {"id": 1}), state("users", {"n": 1}), complete("users")),
        capture_output=True,
        timeout=120,
    )
    return done, parse(done.stdout)


def _check(
    tmp_path: Path, body: dict[str, Any]
) -> tuple[subprocess.CompletedProcess[bytes], list[dict[str, Any]]]:
    done = subprocess.run(
        command("destination_postgres", "check", "--config", _config(tmp_path, body)),
        capture_output=True,
        timeout=120,
    )
    return done, parse(done.stdout)


def _the_error(done: subprocess.CompletedProcess[bytes], found: list[dict[str, Any]]) -> dict[str, Any]:
    """The one TRACE error the destination ended with; nothing of the secret anywhere."""
    assert done.returncode == 1, done.stderr[-2000:]
    (trace,) = [m for m in found if m["type"] == "TRACE"]
    assert SECRET.encode() not in done.stdout + done.stderr
    error: dict[str, Any] = trace["trace"]["error"]
    assert "\n" not in error["message"]
    return error


def _hold_every_slot(cluster: PrivateCluster, user: str) -> list[psycopg.Connection[Any]]:
    """Sessions of ``user`` opened until the server refuses one more."""
    held: list[psycopg.Connection[Any]] = []
    while True:
        try:
            held.append(cluster.connect(user=user, autocommit=True))
        except psycopg.OperationalError:
            return held


@pytest.mark.parametrize(
    ("user", "refusal"),
    [("loader", "every connection slot not reserved taken"), ("postgres", "every connection slot taken")],
)
@pytest.mark.parametrize("command_name", ["write", "check"])
def test_a_server_with_every_connection_slot_taken_is_a_failure_to_retry(
    tmp_path: Path, cluster: PrivateCluster, user: str, refusal: str, command_name: str
) -> None:
    """Before: "destination-postgres failed: cannot connect to PostgreSQL at ...: connection
    failed: ... FATAL: sorry, too many clients already", a system_error with a stack trace (a
    FAILED check in ``check``), for a server that lets the next attempt in."""
    held = _hold_every_slot(cluster, user)
    try:
        run = _write if command_name == "write" else _check
        error = _the_error(*run(tmp_path, _url(cluster, user=user)))
    finally:
        for conn in held:
            conn.close()
    assert error["failure_type"] == "transient_error"
    assert error["message"].startswith(
        f"destination-postgres: PostgreSQL at the configured url has {refusal}"
    )
    assert "max_connections" in error["message"]
    assert "stack_trace" not in error


def test_a_server_shutting_down_is_a_failure_to_retry(tmp_path: Path, cluster: PrivateCluster) -> None:
    """A smart shutdown waits for the sessions it has and refuses new ones meanwhile ("the
    database system is shutting down"), as a server restarting does: the sync is retried."""
    with cluster.connect(autocommit=True) as session:  # keeps the server shutting down, not down
        cluster.stop("smart")
        for _ in range(10_000):  # the postmaster takes the signal in its own time
            try:
                psycopg.connect(
                    host=cluster.host, port=cluster.port, user="loader", dbname="postgres"
                ).close()
            except psycopg.OperationalError as exc:
                assert "shutting down" in str(exc)
                break
        error = _the_error(*_write(tmp_path, _fields(cluster)))
        assert session.execute("SELECT 1").fetchone() == (1,)
    assert error["failure_type"] == "transient_error"
    assert error["message"].startswith(
        "destination-postgres: PostgreSQL at loader@127.0.0.1:"
        + str(cluster.port)
        + "/postgres is shutting down;"
    )


def test_nothing_listening_is_retried_in_a_sync_and_a_failed_check(
    tmp_path: Path, cluster: PrivateCluster
) -> None:
    """A server restarting refuses the connection outright; a sync is retried, while a check (is
    the port right?) still says FAILED in one line."""
    closed = _url(cluster, port=_free_port())
    error = _the_error(*_write(tmp_path, closed))
    assert error["failure_type"] == "transient_error"
    assert error["message"].startswith(
        "destination-postgres: nothing accepts connections at the configured url"
    )
    done, found = _check(tmp_path, closed)
    assert done.returncode == 0, done.stderr
    (status,) = found
    assert status["connectionStatus"]["status"] == "FAILED"
    assert status["connectionStatus"]["message"] == (
        "cannot connect to PostgreSQL at the configured url: connection refused: is the server"
        " running, and are the host and port right?"
    )


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"database": "no_such_database"}, 'database "no_such_database" does not exist'),
        ({"username": "no_such_role"}, 'role "no_such_role" does not exist'),
        ({"ssl_mode": "require"}, "server does not support SSL"),
        ({"host": "no-such-host.invalid"}, "failed to resolve host"),
    ],
)
def test_a_refusal_of_the_config_is_not_retried(
    tmp_path: Path, cluster: PrivateCluster, changes: dict[str, Any], said: str
) -> None:
    """Before: a system_error, retried three times for nothing. Now a config_error (and, in a
    check, a FAILED connection status, as before)."""
    error = _the_error(*_write(tmp_path, _fields(cluster, **changes)))
    assert error["failure_type"] == "config_error"
    assert error["message"].startswith("cannot connect to PostgreSQL at ") and said in error["message"]
    _, found = _check(tmp_path, _fields(cluster, **changes))
    (status,) = found
    assert status["connectionStatus"]["status"] == "FAILED" and said in status["connectionStatus"]["message"]


def test_a_server_stopped_mid_sync_is_a_failure_to_retry(tmp_path: Path, cluster: PrivateCluster) -> None:
    """A fast shutdown (a restart) ends the destination's session between two states: the
    records of the first are committed, the sync fails with a transient error, so it is retried
    from that state."""
    catalog = tmp_path / "catalog.json"
    catalog.write_bytes(orjson.dumps({"streams": [stream("users", {"id": {"type": "integer"}})]}))
    config = _config(tmp_path, _fields(cluster, username="postgres"))  # loader may not create tables
    run = subprocess.Popen(
        command("destination_postgres", "write", "--config", config, "--catalog", catalog),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert run.stdin is not None and run.stdout is not None
    run.stdin.write(messages_in(record("users", {"id": 1}), state("users", {"n": 1})))
    run.stdin.flush()
    first = orjson.loads(run.stdout.readline())  # the echo: the first record is committed
    assert first["type"] == "STATE", first
    cluster.stop("fast")
    gone = False
    for _ in range(10_000):  # until the server is down
        try:
            psycopg.connect(host=cluster.host, port=cluster.port, user="postgres", dbname="postgres").close()
        except psycopg.OperationalError:
            gone = True
            break
    assert gone
    out, err = run.communicate(
        messages_in(record("users", {"id": 2}), state("users", {"n": 2}), complete("users")), timeout=120
    )
    done = subprocess.CompletedProcess(run.args, run.returncode, out, err)
    error = _the_error(done, parse(out))
    assert echoed(parse(out)) == []
    assert error["failure_type"] == "transient_error", error
    assert "the sync is retried from its last state" in error["message"]


def test_a_refused_password_is_not_retried_and_never_shown(tmp_path: Path, cluster: PrivateCluster) -> None:
    """The cluster asks the loader role for its password (scram) from here on; a wrong one was a
    system_error quoting psycopg, retried twice for nothing."""
    assert cluster.data is not None
    hba = cluster.data / "pg_hba.conf"
    hba.write_text("host all loader 127.0.0.1/32 scram-sha-256\n" + hba.read_text())  # first match wins
    with cluster.connect(autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    wrong = {**_fields(cluster), "password": "not-" + SECRET}
    for _ in range(10_000):  # the postmaster reloads in its own time
        try:
            psycopg.connect(
                host=cluster.host, port=cluster.port, user="loader", password="x", dbname="postgres"
            ).close()
        except psycopg.OperationalError:
            break
    error = _the_error(*_write(tmp_path, wrong))
    assert error["failure_type"] == "config_error"
    assert 'password authentication failed for user "loader"' in error["message"]
    assert "not-" + SECRET not in error["message"]
    _, found = _check(tmp_path, wrong)
    (status,) = found
    assert status["connectionStatus"]["status"] == "FAILED"
