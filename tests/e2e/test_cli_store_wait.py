"""The long-running commands wait for a store that is away at start-up; the others do not.

Started beside PostgreSQL (docker-compose, systemd), ``ferryman worker`` used to exit 2 at once
when the server was not up yet: a crash loop on every boot. It now says once that it waits, and
runs its queue once the server answers. On a private cluster that the test stops and starts:
the shared server (127.0.0.1:5432) is everyone's.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from alembic import command

from ferryman.store import open_store
from ferryman.store.migrate import alembic_config
from tests.contract.private_postgres import PrivateCluster, _free_port, private_cluster
from tests.e2e.test_cli_jobs import Cli, bench_connection, table_counts, wait_for
from tests.temporal_support import TemporalServer

WAITING = "waiting for the store until it answers"


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


def stopped(cluster: PrivateCluster) -> None:
    cluster.stop("fast", wait=True)
    with pytest.raises(psycopg.OperationalError):
        cluster.connect().close()


def first_line(process: subprocess.Popen[str]) -> str:
    assert process.stderr is not None
    return process.stderr.readline()


def test_a_worker_started_before_its_postgres_waits_for_it_then_runs_the_queue(
    cli: Cli, tmp_path: Path
) -> None:
    with private_cluster("max_connections=40") as cluster:
        cli.env["FERRYMAN_DATABASE_URL"] = cluster.url()
        database = bench_connection(cli, tmp_path, "queued", 300)
        job_id = str(cli.json("connections", "sync", "queued", "--detach")["job"]["id"])
        stopped(cluster)
        # A one-shot command still ends at once, with the one line.
        assert "is it running" in cli.bad_input("jobs", "list")

        worker = cli.start("worker")
        try:
            line = first_line(worker)
            assert line.startswith(WAITING), line
            assert f"the store postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/postgres" in line
            assert worker.poll() is None  # it waits: no exit 2, no crash loop
            cluster.start()

            def ended() -> dict[str, Any] | None:
                document: dict[str, Any] = cli.json("jobs", "show", job_id)
                return document if document["job"]["status"] in ("succeeded", "failed", "cancelled") else None

            document = wait_for(ended, f"job {job_id} to end on the worker")
        finally:
            worker.send_signal(signal.SIGTERM)
            _, stderr = cli.finish(worker)
        assert worker.returncode == 0, stderr
        assert document["job"]["status"] == "succeeded"
        assert table_counts(database) == {"stream_0": 300}
        # One waiting line while it waited, not one per try; then it started as usual.
        assert stderr.count("waiting for the store") == 0, stderr  # the first was read above
        assert "started: at most" in stderr


@pytest.mark.parametrize("command", ["worker", "scheduler", "server"])
def test_sigterm_while_waiting_for_the_store_ends_it_at_once_as_an_interrupt(cli: Cli, command: str) -> None:
    # Nothing listens on a free port: "connection refused", as before a server is up.
    cli.env["FERRYMAN_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/ferryman"
    argv = [command, "--port", str(_free_port())] if command == "server" else [command]
    process = cli.start(*argv)
    try:
        line = first_line(process)
        assert line.startswith(WAITING), line
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = cli.finish(process)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["error: interrupted while waiting for the store"]
    assert "Traceback" not in stderr + stdout


def test_a_wrong_password_or_database_still_ends_the_worker_at_once_with_one_line(cli: Cli) -> None:
    """These do not pass on their own: waiting would hide them. (Before, both were told "cannot
    reach the database server: is it running?", which they were.)"""
    with private_cluster(password="right-pw") as cluster:
        cli.env["FERRYMAN_DATABASE_URL"] = cluster.url(password="wrong-pw")
        line = cli.bad_input("worker")
        assert "password authentication failed" in line, line
        assert "the server refused the login in FERRYMAN_DATABASE_URL" in line and "wrong-pw" not in line
        assert "waiting" not in line and "is it running" not in line
        cli.env["FERRYMAN_DATABASE_URL"] = cluster.url().rsplit("/", 1)[0] + "/nosuchdb"
        line = cli.bad_input("worker")
        assert 'database "nosuchdb" does not exist; create that database' in line, line


def test_ferryman_store_wait_s_bounds_the_wait(cli: Cli) -> None:
    cli.env["FERRYMAN_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/ferryman"
    cli.env["FERRYMAN_STORE_WAIT_S"] = "0"  # no wait: the line as before
    line = cli.bad_input("worker")
    assert line.startswith("error: the store") and "is it running" in line, line
    cli.env["FERRYMAN_STORE_WAIT_S"] = "1"
    result = cli("worker", code=2)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("waiting for the store for up to 1s"), lines
    assert (
        lines[1].startswith("error: the store")
        and "(gave up after waiting 1s: FERRYMAN_STORE_WAIT_S=1)" in lines[1]
    )


def connecting_to(process: subprocess.Popen[str], port: int) -> bool:
    """Whether ``process`` holds a TCP connection to ``port``: a connect under way to a frozen
    server (the kernel completed the handshake; the server never answers it)."""
    connections = psutil.Process(process.pid).net_connections(kind="tcp")
    return any(c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED for c in connections)


def test_a_worker_waits_out_a_frozen_postgres_that_never_answers_its_connect(
    cli: Cli, tmp_path: Path
) -> None:
    """A server that takes the connection but never answers (hung, or behind a firewall that drops
    its packets: a SIGSTOPped cluster, whose kernel still completes the TCP handshake) is "not
    reachable" once the URL's connect_timeout is spent: the worker says so and waits, and runs the
    queue once the server answers. (Before, the URL's connect_timeout was overridden by ferryman's
    10 s, and the line blamed a server that is not running.)"""
    with private_cluster("max_connections=40") as cluster:
        cli.env["FERRYMAN_DATABASE_URL"] = cluster.url() + "?connect_timeout=2"
        database = bench_connection(cli, tmp_path, "queued", 200)
        job_id = str(cli.json("connections", "sync", "queued", "--detach")["job"]["id"])
        cluster.freeze()
        worker = cli.start("worker")
        try:
            line = first_line(worker)
            assert line.startswith(WAITING), line
            assert "no answer to a connect within 2s (connection timeout expired)" in line, line
            assert "did not answer: is it running and not stuck" in line and "?connect_timeout=2" in line
            assert worker.poll() is None
            cluster.thaw()

            def ended() -> str | None:
                status: str = cli.json("jobs", "show", job_id)["job"]["status"]
                return status if status in ("succeeded", "failed", "cancelled") else None

            status = wait_for(ended, f"job {job_id} to end on the worker")
        finally:
            cluster.thaw()
            worker.send_signal(signal.SIGTERM)
            _, stderr = cli.finish(worker)
        assert worker.returncode == 0, stderr
        assert status == "succeeded"
        assert table_counts(database) == {"stream_0": 200}


@pytest.mark.parametrize("command", ["worker", "server"])
def test_sigterm_ends_a_command_stuck_in_a_connect_to_a_frozen_postgres(cli: Cli, command: str) -> None:
    """SIGTERM while the first connect hangs ends the command there and then, one line, exit 130.
    (Before, the connect went on to its timeout first, then the command said it was waiting, and
    only then that it was interrupted.)"""
    with private_cluster() as cluster:
        cli.env["FERRYMAN_DATABASE_URL"] = cluster.url() + "?connect_timeout=60"
        cluster.freeze()
        argv = [command, "--port", str(_free_port())] if command == "server" else [command]
        process = cli.start(*argv)
        try:
            wait_for(lambda: connecting_to(process, cluster.port), f"{command} to connect")
        finally:
            process.send_signal(signal.SIGTERM)
            stdout, stderr = cli.finish(process)
        assert process.returncode == 130, stderr
        assert stderr.strip().splitlines() == ["error: interrupted while waiting for the store"]
        assert "Traceback" not in stderr + stdout


def test_a_worker_waits_out_a_server_that_ends_its_session_in_the_middle_of_a_migration(cli: Cli) -> None:
    """A refusal that passes is one during a migration too: the migration is rolled back whole,
    and the worker waits and migrates again (before, it exited 2 at once, "could not be upgraded").
    The test holds a lock on a table the newest migration alters, so the worker's migration waits
    where the test can see it, then ends the worker's session as a restarting server would."""
    with private_cluster("max_connections=40") as cluster:
        cli.env["FERRYMAN_DATABASE_URL"] = cluster.url()
        with open_store(cluster.url()) as store, store.engine.begin() as conn:
            config = alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "0010")  # 0011 adds a column to attempts
        with cluster.connect(autocommit=False) as holder, cluster.connect(autocommit=True) as admin:
            holder.execute("LOCK TABLE attempts IN ACCESS SHARE MODE")
            worker = cli.start("worker")
            try:

                def migrating() -> int | None:
                    row = admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> %s",
                        (holder.info.backend_pid,),
                    ).fetchone()
                    return int(row[0]) if row else None

                backend = wait_for(migrating, "the worker's migration to wait for the lock")
                admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
                line = first_line(worker)
                if line.startswith("waiting for other sessions on the store"):
                    # The migration's lock_timeout (2 s) was spent before the test ended its
                    # session, on a slow machine: said once, then it tried again.
                    line = first_line(worker)
                holder.rollback()  # the table is free: the next try migrates
                assert line.startswith(WAITING), line
                assert "could not be upgraded to schema 0011" in line, line
                assert "terminating connection due to administrator command" in line, line
                started = first_line(worker)
                assert started.startswith("worker ") and "started: at most" in started, started
                assert worker.poll() is None
            finally:
                worker.send_signal(signal.SIGTERM)
                _, stderr = cli.finish(worker)
        assert worker.returncode == 0, stderr
        with cluster.connect() as check:
            assert check.execute("SELECT version_num FROM ferryman_schema_version").fetchone() == ("0011",)


def test_a_temporal_worker_started_before_its_postgres_waits_for_it_then_starts(
    cli: Cli, temporal_server: TemporalServer
) -> None:
    """``worker --engine temporal`` opens the store as the local one does: it waits (one
    ``store_unavailable`` event with ``--json``), then announces itself on its Temporal server
    (until now only checked by hand). Skips without the temporal CLI, as the Temporal tests do."""
    with private_cluster("max_connections=40") as cluster:
        cli.env.update(
            FERRYMAN_DATABASE_URL=cluster.url(),
            FERRYMAN_TEMPORAL_ADDRESS=temporal_server.address,
            FERRYMAN_TEMPORAL_NAMESPACE=temporal_server.namespace,
            FERRYMAN_TEMPORAL_TASK_QUEUE_PREFIX=f"t{uuid.uuid4().hex[:10]}-",
        )
        stopped(cluster)
        worker = cli.start("worker", "--engine", "temporal", "--json")
        assert worker.stdout is not None
        try:
            waiting = json.loads(worker.stdout.readline())
            assert waiting["event"] == "store_unavailable" and waiting["starting"] is True, waiting
            assert "Connection refused" in waiting["reason"] and "is it running" in waiting["reason"]
            cluster.start()
            announced = json.loads(worker.stdout.readline())
            assert announced["event"] == "started", announced
            assert worker.poll() is None
        finally:
            worker.send_signal(signal.SIGTERM)
            _, stderr = cli.finish(worker)
        assert worker.returncode == 0, stderr
        with open_store(cluster.url()) as store:  # the worker recorded its kind: it got that far
            assert store.engine_kind() == "temporal"


def test_a_temporal_worker_started_before_its_temporal_waits_for_it_and_sigterm_ends_the_wait(
    cli: Cli,
) -> None:
    """Temporal not up yet (nothing listens on its port: the docker-compose case): the worker says
    once that it waits, as for the store, instead of exiting 1 ("cannot reach Temporal") into a
    supervisor's restart loop; SIGTERM ends the wait, one line, exit 130."""
    port = _free_port()
    cli.env["FERRYMAN_TEMPORAL_ADDRESS"] = f"127.0.0.1:{port}"
    process = cli.start("worker", "--engine", "temporal")
    try:
        line = first_line(process)
        assert line.startswith("waiting for Temporal until it answers (SIGTERM or Ctrl-C to stop): "), line
        assert f"cannot reach Temporal at 127.0.0.1:{port} (namespace default)" in line, line
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = cli.finish(process)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["error: interrupted while waiting for Temporal"]
    assert "Traceback" not in stderr + stdout


def test_sigterm_ends_a_temporal_worker_stuck_in_a_connect_to_a_silent_temporal(cli: Cli) -> None:
    """A Temporal that takes the connection and never answers (a listener that never accepts:
    the kernel completes the handshake): SIGTERM during the connect ends the worker there, one
    line, exit 130. Before, it said it had started, then "stopping", then waited out the SDK's
    connect timeout and exited 1 ("cannot reach Temporal ...: Timeout expired")."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        cli.env["FERRYMAN_TEMPORAL_ADDRESS"] = f"127.0.0.1:{port}"
        process = cli.start("worker", "--engine", "temporal")
        try:
            wait_for(lambda: connecting_to(process, port), "the worker to connect to Temporal")
        finally:
            process.send_signal(signal.SIGTERM)
            stdout, stderr = cli.finish(process)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted while waiting for Temporal", stderr
    assert "started" not in stderr and "Traceback" not in stderr + stdout
