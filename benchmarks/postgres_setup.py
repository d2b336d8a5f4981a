"""destination-postgres's set-up (its tables made or checked before the first record) against the
size of the database's catalog.

    python benchmarks/postgres_setup.py [--streams 1000] [--mode overwrite] [--churn 0 3000]
                                        [--syncs 2] [--host 127.0.0.1] [--port 5432] [--user postgres]

For each ``--churn`` figure, a database of the probe's own is created (``CREATE DATABASE``, as
the user given, from the ``postgres`` database), that many tables (each with a key, a text and a
jsonb column: an index and a TOAST table each) are created and dropped in it, leaving their dead
rows in pg_class, pg_attribute, pg_type and pg_index as a busy database has them, and then
``--syncs`` syncs of ``--streams`` streams in ``--mode`` run one after another, each with a
``sync_id`` of its own (the first creates the tables, the next ones find them). Each sync runs in
this process, as the destination's ``write`` runs it: the set-up is the construction of
:class:`PostgresSink` (every table created, altered, staged), the total adds the load of one
record, one state and the COMPLETE status of each stream, read from a file, and the last commit.
The database is dropped at the end (``WITH (FORCE)``). Prints seconds and the load average; not a
test: it asserts nothing. To time another build, point PYTHONPATH at its ``src``.

With ``--by-statement``: where the set-up's time went, summed by the first words of each
statement the destination's connection ran (psycopg's ``Connection.execute`` wrapped), which
tells the catalog look-ups apart from the DDL they lead to.
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time
from typing import Any

import orjson
import psycopg

from ferryman.builtin._catalog import parse_catalog
from ferryman.builtin._destination import load
from ferryman.builtin._runtime import Output
from ferryman.builtin.destination_postgres import NAME, PostgresSink, parse_config, table_for

PROPERTIES = {"id": {"type": "integer"}, "v": {"type": "string"}}
SPENT: collections.Counter[str] = collections.Counter()  # --by-statement: seconds per statement kind
RUN: collections.Counter[str] = collections.Counter()  # and how many of each


def count_statements() -> None:
    """Sum the time of each statement the destination runs, by its first words."""
    execute = psycopg.Connection.execute

    def timed(self: psycopg.Connection[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(self, query, *args, **kwargs)
        finally:
            kind = " ".join(str(query).split()[:3])
            kind = kind.split('"')[0].strip() if '"' in kind else kind
            SPENT[kind] += time.perf_counter() - start
            RUN[kind] += 1

    psycopg.Connection.execute = timed  # type: ignore[method-assign]


def churn(conn: psycopg.Connection[Any], count: int, per_transaction: int = 200) -> None:
    """Create ``count`` tables and drop them, ``per_transaction`` at a time."""
    for start in range(0, count, per_transaction):
        names = [f"churn_{n}" for n in range(start, min(count, start + per_transaction))]
        for name in names:
            conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, v text, j jsonb)")  # type: ignore[arg-type]
        conn.commit()
        for name in names:
            conn.execute(f"DROP TABLE {name}")  # type: ignore[arg-type]
        conn.commit()


def sync(
    config: dict[str, Any], streams: int, mode: str, sync_id: int
) -> tuple[float, float, collections.Counter[str]]:
    """One sync of ``streams`` streams of one record each: set-up seconds, total seconds, and
    the set-up's seconds by statement (with ``--by-statement``)."""
    names = [f"s{n}" for n in range(streams)]
    catalog = parse_catalog(
        {
            "streams": [
                {
                    "stream": {
                        "name": name,
                        "json_schema": {"type": "object", "properties": PROPERTIES},
                        "supported_sync_modes": ["full_refresh", "incremental"],
                        "source_defined_primary_key": [["id"]],
                    },
                    "sync_mode": "incremental",
                    "destination_sync_mode": mode,
                    "sync_id": sync_id,
                    "generation_id": sync_id,
                }
                for name in names
            ]
        }
    )
    lines = []
    for name in names:
        lines.append(
            {"type": "RECORD", "record": {"stream": name, "data": {"id": 1, "v": "a"}, "emitted_at": 1}}
        )
        lines.append(
            {
                "type": "STATE",
                "state": {
                    "type": "STREAM",
                    "stream": {"stream_descriptor": {"name": name}, "stream_state": {"n": 1}},
                },
            }
        )
    for name in names:
        status = {"stream_descriptor": {"name": name}, "status": "COMPLETE"}
        lines.append(
            {"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 1, "stream_status": status}}
        )
    parsed = parse_config(config)
    with tempfile.TemporaryFile() as messages, open(os.devnull, "wb") as devnull:
        messages.write(b"".join(orjson.dumps(line) + b"\n" for line in lines))
        messages.seek(0)
        start = time.perf_counter()
        tables = {stream.key: table_for(stream, parsed.schema) for stream in catalog}
        SPENT.clear()
        RUN.clear()
        sink = PostgresSink(parsed, tables)
        set_up = time.perf_counter() - start
        spent = collections.Counter({f"{RUN[kind]:5d} x  {kind}": SPENT[kind] for kind in SPENT})
        try:
            load(NAME, sink, Output(devnull.fileno()), fd=messages.fileno())
        finally:
            sink.close()
        total = time.perf_counter() - start
    return set_up, total, spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--mode", choices=("append", "append_dedup", "overwrite"), default="overwrite")
    parser.add_argument("--churn", type=int, nargs="+", default=[0, 3000])
    parser.add_argument("--syncs", type=int, default=2)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--by-statement", action="store_true")
    args = parser.parse_args()
    if args.by_statement:
        count_statements()
    admin = {
        "host": args.host,
        "port": args.port,
        "user": args.user,
        "dbname": "postgres",
        "autocommit": True,
    }
    for tables in args.churn:
        database = f"ferryman_setup_probe_{os.getpid()}"
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')  # type: ignore[arg-type]
            conn.execute(f'CREATE DATABASE "{database}"')  # type: ignore[arg-type]
        try:
            with psycopg.connect(host=args.host, port=args.port, user=args.user, dbname=database) as conn:
                churn(conn, tables)
            config = {"host": args.host, "port": args.port, "database": database, "username": args.user}
            config["ssl_mode"] = "disable"
            for number in range(1, args.syncs + 1):
                load_before = os.getloadavg()[0]
                set_up, total, spent = sync(config, args.streams, args.mode, sync_id=number)
                print(
                    f"{args.streams} {args.mode} streams, {tables} tables created and dropped before,"
                    f" sync {number}: set-up {set_up:.2f} s, total {total:.2f} s"
                    f" (load {load_before:.1f} -> {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
                for kind, seconds in spent.most_common(6):
                    print(f"    {seconds:6.2f} s  {kind}", flush=True)
        finally:
            with psycopg.connect(**admin) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
