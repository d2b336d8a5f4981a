"""destination-postgres with more streams than one transaction can lock.

Each table a transaction touches (with its indexes, TOAST table and batch table) holds a slot of
the server's lock table until the transaction ends, and the slots are few (64 per connection by
default, shared). Loading a source of a thousand streams in one transaction failed with "out of
shared memory", and so did every retry. The destination now touches at most a few dozen streams
per transaction, committing its states with each group. The first test uses the server's real
limit; the others set the number of streams per transaction to 2 with the destination's
environment variable, so that a handful of streams crosses it.
"""

from __future__ import annotations

import os
import select
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.contract.destination_support import (
    PostgresTarget,
    complete,
    echoed,
    messages_in,
    parse,
    record,
    state,
    stream,
)
from tests.contract.store_support import PG_HOST, PG_PORT, PG_USER

STREAMS_PER_TRANSACTION_ENV = "FERRYMAN_POSTGRES_STREAMS_PER_TRANSACTION"  # the destination's
PROPERTIES = {"id": {"type": "integer"}, "v": {"type": "string"}}


@pytest.fixture
def target(tmp_path: Path, pg_database: str) -> PostgresTarget:
    return PostgresTarget(tmp_path, pg_database)


def _write(
    target: PostgresTarget, catalog: Path, messages: list[dict[str, Any]], per_transaction: int | None
):
    env = dict(os.environ)
    env.pop(STREAMS_PER_TRANSACTION_ENV, None)
    if per_transaction is not None:
        env[STREAMS_PER_TRANSACTION_ENV] = str(per_transaction)
    return subprocess.run(
        target.command(catalog), input=messages_in(*messages), capture_output=True, timeout=600, env=env
    )


def _counts(target: PostgresTarget, names: list[str]) -> dict[str, int]:
    union = " UNION ALL ".join(f"SELECT '{name}', count(*) FROM public.\"{name}\"" for name in names)
    return {name: count for name, count in target.query(union)}


@pytest.mark.slow
def test_two_thousand_dedup_and_overwrite_streams_load_within_the_servers_lock_table(
    target: PostgresTarget,
) -> None:
    names = [f"s{i}" for i in range(2_000)]

    def catalog_of(sync_id: int) -> Path:
        return target.catalog(
            *(
                stream(name, PROPERTIES, mode="append_dedup" if i % 2 else "overwrite", sync_id=sync_id)
                for i, name in enumerate(names)
            )
        )

    catalog = catalog_of(3)
    messages: list[dict[str, Any]] = []
    for name in names:
        messages += [
            record(name, {"id": 1, "v": "a"}),
            record(name, {"id": 2, "v": "b"}),
            state(name, {"n": 2}),
        ]
    messages += [complete(name) for name in names]
    done = _write(target, catalog, messages, per_transaction=None)
    assert done.returncode == 0, done.stderr[-2000:]
    assert echoed(parse(done.stdout)) == [{"n": 2}] * len(names)
    assert set(_counts(target, names).values()) == {2}
    # The next sync: the session's batch tables went with it, the staging tables are new.
    again = [m for name in names for m in (record(name, {"id": 2, "v": "c"}), state(name, {"n": 3}))]
    done = _write(target, catalog_of(4), again + [complete(name) for name in names], per_transaction=None)
    assert done.returncode == 0, done.stderr[-2000:]
    counts = _counts(target, names)
    assert [counts[name] for name in names[1::2]] == [2] * 1_000  # append_dedup: id 2 replaced
    assert [counts[name] for name in names[0::2]] == [1] * 1_000  # overwrite: the second sync's one row
    assert target.rows("s1", "id, v") == [(1, "a"), (2, "c")]


@pytest.mark.parametrize("mode", ["append", "append_dedup", "overwrite"])
def test_records_of_more_streams_than_a_transaction_takes_are_each_stored_once(
    target: PostgresTarget, mode: str
) -> None:
    names = [f"s{i}" for i in range(7)]
    catalog = target.catalog(*(stream(name, PROPERTIES, mode=mode, sync_id=5) for name in names))
    messages: list[dict[str, Any]] = []
    for round_ in range(3):  # the streams interleaved, a state for each after each round
        for i, name in enumerate(names):
            messages += [record(name, {"id": round_ * 10 + n, "v": name}) for n in range(i + 1)]
        messages += [state(name, {"round": round_}) for name in names]
    messages += [record("s0", {"id": 99, "v": "after"})]  # held (append, overwrite): completes
    messages += [complete(name) for name in names]
    done = _write(target, catalog, messages, per_transaction=2)
    assert done.returncode == 0, done.stderr[-2000:]
    assert echoed(parse(done.stdout)) == [{"round": r} for r in range(3) for _ in names]
    for i, name in enumerate(names):
        expected = sorted((r * 10 + n, name) for r in range(3) for n in range(i + 1))
        if name == "s0":
            expected.append((99, "after"))
        assert target.rows(name, "id, v") == expected, name


def test_a_global_state_over_more_held_streams_than_a_transaction_takes_stores_them_once(
    target: PostgresTarget,
) -> None:
    names = [f"g{i}" for i in range(6)]
    catalog = target.catalog(*(stream(name, PROPERTIES) for name in names))
    messages = [record(name, {"id": n, "v": name}) for n in range(3) for name in names]
    messages.append({"type": "STATE", "state": {"type": "GLOBAL", "global": {"shared_state": {"lsn": 7}}}})
    messages.append(record("g0", {"id": 50, "v": "uncovered"}))  # after the state: not stored
    done = _write(target, catalog, messages, per_transaction=2)
    assert done.returncode == 0, done.stderr[-2000:]
    found = parse(done.stdout)
    assert [m["state"]["global"]["shared_state"] for m in found if m["type"] == "STATE"] == [{"lsn": 7}]
    for name in names:
        assert target.rows(name, "id") == [(0,), (1,), (2,)], name


def test_each_commit_is_whole_echoed_states_match_the_rows_stored_when_the_destination_is_killed(
    target: PostgresTarget,
) -> None:
    """With two streams per transaction, s0 and s1 are committed with their states; s2 and s3
    wait on a lock a reader holds on s3's table, and are killed there. What is stored is exactly
    what the echoed states cover: nothing of s2, whose state was received but not echoed (a
    commit in parts would have stored s2's rows without their state, and its retry would store
    them twice)."""
    names = [f"k{i}" for i in range(4)]
    catalog = target.catalog(*(stream(name, PROPERTIES) for name in names))
    first = _write(target, catalog, [], per_transaction=2)  # the tables, empty
    assert first.returncode == 0, first.stderr[-2000:]
    env = {**os.environ, STREAMS_PER_TRANSACTION_ENV: "2"}
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=target.database) as blocker:
        blocker.execute('LOCK TABLE public."k3" IN SHARE MODE')  # COPY into k3 waits for it
        process = subprocess.Popen(
            target.command(catalog), stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        try:
            assert process.stdin is not None and process.stdout is not None
            messages = [
                m for name in names for m in (record(name, {"id": 1, "v": name}), state(name, {"s": name}))
            ]
            process.stdin.write(messages_in(*messages))
            process.stdin.flush()  # stdin stays open: the input is not over
            seen = _read_states(process, want=2)
            assert seen == [{"s": "k0"}, {"s": "k1"}]
        finally:
            process.kill()
            process.wait()
        blocker.rollback()
    assert _counts(target, names) == {"k0": 1, "k1": 1, "k2": 0, "k3": 0}


def _read_states(process: subprocess.Popen[bytes], want: int) -> list[Any]:
    """The first ``want`` states the destination echoes (what else it prints is skipped)."""
    assert process.stdout is not None
    states: list[Any] = []
    pending = b""
    fd = process.stdout.fileno()
    while len(states) < want:
        ready, _, _ = select.select([fd], [], [], 60)
        assert ready, f"the destination echoed {states} and then nothing for a minute"
        chunk = os.read(fd, 65536)
        assert chunk, f"the destination ended after echoing {states}"
        pending += chunk
        *lines, pending = pending.split(b"\n")
        states += echoed(parse(b"\n".join(line for line in lines if line)))
    return states


def test_a_wrong_number_of_streams_per_transaction_is_one_line(target: PostgresTarget) -> None:
    catalog = target.catalog(stream("x", PROPERTIES))
    done = _write(target, catalog, [record("x", {"id": 1})], per_transaction=None)
    assert done.returncode == 0
    env = {**os.environ, STREAMS_PER_TRANSACTION_ENV: "none"}
    bad = subprocess.run(target.command(catalog), input=b"", capture_output=True, timeout=120, env=env)
    assert bad.returncode != 0
    assert b"Traceback" not in bad.stderr + bad.stdout
    assert STREAMS_PER_TRANSACTION_ENV.encode() in bad.stdout + bad.stderr
