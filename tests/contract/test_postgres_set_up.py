"""destination-postgres's set-up: what it finds of the stored tables, and the server's lock table.

The set-up reads once, from pg_catalog, what every stream needs (its table and columns, its
staging tables, its unique index), instead of asking information_schema per stream. These tests
hold it to what a user sees: tables found again under odd schema and table names, a role that may
not create schemas loading into the schema it owns, and a lock table that runs full said in one
line, as a failure to retry.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from tests.contract.destination_support import (
    PostgresTarget,
    command,
    complete,
    echoed,
    messages_in,
    parse,
    record,
    state,
    stream,
)
from tests.contract.private_postgres import fill_lock_table, private_cluster
from tests.contract.store_support import PG_HOST, PG_PORT, PG_USER

STREAMS_PER_TRANSACTION_ENV = "FERRYMAN_POSTGRES_STREAMS_PER_TRANSACTION"  # the destination's


@pytest.fixture
def target(tmp_path: Path, pg_database: str) -> PostgresTarget:
    return PostgresTarget(tmp_path, pg_database)


def _admin(database: str) -> psycopg.Connection[Any]:
    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database, autocommit=True)


def _run(target: PostgresTarget, catalog: Path, messages: list[dict[str, Any]], **env: str):
    return subprocess.run(
        target.command(catalog),
        input=messages_in(*messages),
        capture_output=True,
        timeout=600,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("mode", ["append", "append_dedup", "overwrite"])
def test_a_table_under_odd_names_is_found_again_and_brought_up_to_the_stream(
    target: PostgresTarget, mode: str
) -> None:
    """A schema named like a reserved word in mixed case, a table name of PostgreSQL's full 63
    bytes in mixed case, and a column the user dropped in between: the second sync finds the
    table (it does not make another), adds the columns it lacks and widens the one that grew."""
    schema, name = "Select", "Orders_" + "Ab" * 28  # 63 bytes
    first = {"id": {"type": "integer"}, "v": {"type": "integer"}}
    catalog = target.catalog(_in(schema, stream(name, first, mode=mode, sync_id=1)))
    target.write(catalog, _in(schema, record(name, {"id": 1, "v": 5})), _in(schema, complete(name)))
    with _admin(target.database) as conn:
        conn.execute(f'ALTER TABLE "{schema}"."{name}" DROP COLUMN v')
    second = {"id": {"type": "number"}, "v": {"type": "string"}, "w": {"type": "string"}}
    catalog = target.catalog(_in(schema, stream(name, second, mode=mode, sync_id=2)))
    again = _in(schema, record(name, {"id": 2.5, "v": "x", "w": "y"}))
    done = target.write(catalog, again, _in(schema, complete(name)))
    assert [m for m in done if m["type"] == "TRACE"] == []
    tables = target.query(
        "SELECT table_name FROM information_schema.tables"
        f" WHERE table_schema = '{schema}' AND table_name NOT LIKE '\\_ferryman%'"
    )
    assert tables == [(name,)]
    columns = dict(
        target.query(
            "SELECT column_name, data_type FROM information_schema.columns"
            f" WHERE table_schema = '{schema}' AND table_name = '{name}'"
        )
    )
    assert (columns["id"], columns["v"], columns["w"]) == ("double precision", "text", "text")
    stored = sorted(target.query(f'SELECT id, v, w FROM "{schema}"."{name}"'), key=repr)
    if mode == "overwrite":
        assert stored == [(2.5, "x", "y")]
    else:
        assert stored == [(1.0, None, None), (2.5, "x", "y")]


def _in(schema: str, message: dict[str, Any]) -> dict[str, Any]:
    """A configured stream, RECORD or COMPLETE status, of the stream in namespace ``schema``."""
    if "stream" in message and "json_schema" in message["stream"]:
        message["stream"]["namespace"] = schema
    elif message["type"] == "RECORD":
        message["record"]["namespace"] = schema
    else:
        message["trace"]["stream_status"]["stream_descriptor"]["namespace"] = schema
    return message


@pytest.fixture
def loader(target: PostgresTarget) -> Iterator[str]:
    """A role that may create tables in its own schema ``loads`` but not schemas in the database
    (PostgreSQL grants no CREATE on a database to PUBLIC)."""
    role = f"ferryman_loader_{uuid.uuid4().hex[:8]}"
    with _admin(target.database) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE SCHEMA loads AUTHORIZATION {role}")
    try:
        yield role
    finally:
        with _admin(target.database) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_a_role_that_may_not_create_schemas_loads_into_the_schema_it_has(
    target: PostgresTarget, loader: str
) -> None:
    """CREATE SCHEMA IF NOT EXISTS asks for CREATE on the database even when the schema is
    there: the destination asked it for every stream, and such a role failed every sync."""
    target.config.write_bytes(orjson.dumps({**target.config_body(), "username": loader, "schema": "loads"}))
    properties = {"id": {"type": "integer"}}
    catalog = target.catalog(
        *(
            stream(f"t_{mode}", properties, mode=mode, sync_id=1)
            for mode in ("append", "append_dedup", "overwrite")
        )
    )
    checked = subprocess.run(
        command(target.module, "check", "--config", target.config), capture_output=True, timeout=120
    )
    (status,) = parse(checked.stdout)
    assert status["connectionStatus"]["status"] == "SUCCEEDED", status
    names = ["t_append", "t_append_dedup", "t_overwrite"]
    messages = [m for name in names for m in (record(name, {"id": 1}), state(name, {"n": 1}))]
    done = _run(target, catalog, messages + [complete(name) for name in names])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert echoed(parse(done.stdout)) == [{"n": 1}] * 3
    for name in names:
        assert target.query(f"SELECT id FROM loads.{name}") == [(1,)]


@pytest.mark.slow
def test_a_lock_table_that_runs_full_is_one_line_and_a_failure_to_retry(target: PostgresTarget) -> None:
    """Real: 2,000 append_dedup streams in one transaction (the destination told it may) take
    more lock slots than a default server has. Another session holding most of them would do
    the same with far fewer streams, and let go of them later: so the attempt is retried."""
    names = [f"d{i}" for i in range(2_000)]
    catalog = target.catalog(
        *(stream(name, {"id": {"type": "integer"}}, mode="append_dedup") for name in names)
    )
    done = _run(target, catalog, [record("d0", {"id": 1})], **{STREAMS_PER_TRANSACTION_ENV: "100000"})
    assert done.returncode == 1
    assert b"Traceback" not in done.stderr + done.stdout
    (trace,) = [m for m in parse(done.stdout) if m["type"] == "TRACE"]
    error = trace["trace"]["error"]
    assert error["failure_type"] == "transient_error"
    message = error["message"]
    assert message.startswith("destination-postgres: PostgreSQL ran out of lock slots (out of shared memory)")
    assert f"set {STREAMS_PER_TRANSACTION_ENV} lower (now 100000)" in message
    assert "raise the server's max_locks_per_transaction" in message
    assert done.stderr.decode().strip() == message  # the same one line, for the attempt's log
    assert "\n" not in message and "stack_trace" not in error


@pytest.mark.parametrize("form", ["fields", "url"])
def test_a_lock_table_full_when_connecting_is_one_line_and_a_failure_to_retry(
    tmp_path: Path, form: str
) -> None:
    """A new session takes a lock on its database: when other sessions hold every slot of the
    lock table, the server refuses the connection itself. check and write say so in the same
    one line as a set-up that runs out, as a transient_error (retried), with no traceback and
    no password; once the slots are free, the same check passes. On a cluster of the test's own:
    filling the shared server's lock table would fail everyone else's sessions."""
    password = "pw-" + uuid.uuid4().hex
    with private_cluster() as cluster:
        body: dict[str, Any] = {"host": cluster.host, "port": cluster.port, "database": cluster.dbname}
        body |= {"username": cluster.user, "password": password, "ssl_mode": "disable"}
        if form == "url":
            body = {
                "url": f"postgresql://{cluster.user}:{password}@{cluster.host}:{cluster.port}/{cluster.dbname}"
            }
        config = tmp_path / "config.json"
        config.write_bytes(orjson.dumps(body))
        catalog = tmp_path / "catalog.json"
        catalog.write_bytes(orjson.dumps({"streams": [stream("users", {"id": {"type": "integer"}})]}))
        runs = {
            "check": command("destination_postgres", "check", "--config", config),
            "write": command("destination_postgres", "write", "--config", config, "--catalog", catalog),
        }
        with cluster.connect(autocommit=True) as holder:
            assert fill_lock_table(holder) > 0
            for name, argv in runs.items():
                done = subprocess.run(
                    argv, input=messages_in(record("users", {"id": 1})), capture_output=True, timeout=120
                )
                assert done.returncode == 1, (name, done.stdout, done.stderr)
                found = parse(done.stdout)
                assert [m["type"] for m in found] == ["TRACE"], (name, found)
                error = found[0]["trace"]["error"]
                assert error["failure_type"] == "transient_error"
                message = error["message"]
                assert message.startswith(
                    "destination-postgres: PostgreSQL ran out of lock slots (out of shared memory)"
                )
                assert "raise the server's max_locks_per_transaction" in message
                assert done.stderr.decode().strip() == message  # the same one line, for the attempt's log
                assert "\n" not in message and "stack_trace" not in error
                assert password not in (done.stdout + done.stderr).decode()
        again = subprocess.run(runs["check"], capture_output=True, timeout=120)
    (status,) = parse(again.stdout)
    assert status["connectionStatus"]["status"] == "SUCCEEDED", status


def test_an_overwrite_staged_by_an_earlier_version_is_resumed_and_hashes_no_longer_collide(
    tmp_path: Path, pg_database: str
) -> None:
    """Staging tables were named with 8 hex characters of a hash of schema.name: of 5,000 streams
    in a schema, two shared a name in about one sync of 300, and one stream's staging table was
    taken, or dropped as abandoned, by the other. Names now hold 16; a staging table an attempt
    of an earlier version left under the shorter name is still resumed by the job's retry."""
    from ferryman.builtin._postgres_tables import LEGACY_DIGEST, staging_prefix

    target = PostgresTarget(tmp_path, pg_database)
    properties = {"id": {"type": "integer"}, "v": {"type": "string"}}
    # orders_10932 and orders_50904 share the first 8 hex characters of their hash.
    assert staging_prefix("public", "orders_10932", LEGACY_DIGEST) == staging_prefix(
        "public", "orders_50904", LEGACY_DIGEST
    )
    assert staging_prefix("public", "orders_10932") != staging_prefix("public", "orders_50904")
    job = target.catalog(stream("users", properties, "overwrite", sync_id=7))
    found = target.write(job, record("users", {"id": 1, "v": "a"}), state("users", {"page": 1}))
    assert echoed(found) == [{"page": 1}]
    # What an earlier version's attempt would have left: the same table under the shorter name.
    legacy = staging_prefix("public", "users", LEGACY_DIGEST) + "s7"
    (name,) = [
        n
        for (n,) in target.query("SELECT tablename FROM pg_tables WHERE tablename LIKE '_ferryman_staging_%'")
    ]
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=pg_database) as conn:
        conn.execute(f'ALTER TABLE public."{name}" RENAME TO "{legacy}"')
    target.write(job, record("users", {"id": 2, "v": "b"}), complete("users"))
    assert target.rows("users", "id, v") == [(1, "a"), (2, "b")]  # the first attempt's row kept
    assert target.query("SELECT count(*) FROM pg_tables WHERE tablename LIKE '_ferryman_staging_%'") == [(0,)]


def test_a_dedup_tables_unique_index_from_an_earlier_version_is_kept_not_doubled(
    tmp_path: Path, pg_database: str
) -> None:
    from ferryman.builtin._postgres_tables import LEGACY_DIGEST, digest

    target = PostgresTarget(tmp_path, pg_database)
    catalog = target.catalog(
        stream("users", {"id": {"type": "integer"}, "v": {"type": "string"}}, "append_dedup")
    )
    target.write(catalog, record("users", {"id": 1, "v": "a"}), state("users", {"n": 1}))
    (index,) = [n for (n,) in target.query("SELECT indexname FROM pg_indexes WHERE tablename = 'users'")]
    legacy = f"_ferryman_pk_{digest('public.users', LEGACY_DIGEST)}"
    assert index != legacy
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=pg_database) as conn:
        conn.execute(f'ALTER INDEX public."{index}" RENAME TO "{legacy}"')  # as an earlier version named it
    target.write(catalog, record("users", {"id": 1, "v": "b"}), state("users", {"n": 2}))
    assert target.query("SELECT indexname FROM pg_indexes WHERE tablename = 'users'") == [(legacy,)]
    assert target.rows("users", "id, v") == [(1, "b")]
