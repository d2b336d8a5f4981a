"""One contract for every built-in destination (DuckDB, PostgreSQL, and JSON lines where it applies):
the sync modes, the state echo, a kill mid-load, schema changes and values that do not fit.

Each test runs the destinations as real processes (``python -m ferryman.builtin.<module> write``)
and reads back what they stored, the way a user would query it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import small_tmpfs
from tests.contract.destination_support import (
    ALL,
    TYPED,
    DuckDBTarget,
    PostgresTarget,
    Target,
    command,
    complete,
    echoed,
    grow_disk,
    make_target,
    messages_in,
    parse,
    record,
    state,
    stream,
)
from tests.contract.store_support import PG_HOST, PG_PORT, PG_USER

USERS = {"id": {"type": "integer"}, "v": {"type": "string"}}


@pytest.fixture(params=ALL)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return make_target(request.param, tmp_path, request)


@pytest.fixture(params=TYPED)
def typed(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    return make_target(request.param, tmp_path, request)


def users(ids: range, v: str = "x") -> list[dict[str, Any]]:
    return [record("users", {"id": i, "v": v}) for i in ids]


# --- sync modes ---------------------------------------------------------------------------------


def test_append_adds_and_overwrite_replaces_once_the_stream_completed(target: Target) -> None:
    append = target.catalog(stream("users", USERS, "append"))
    target.write(append, *users(range(1, 4)), state("users", 1))
    target.write(append, *users(range(3, 5)), state("users", 2))
    assert target.rows("users", "id") == [(1,), (2,), (3,), (3,), (4,)]

    overwrite = target.catalog(stream("users", USERS, "overwrite"))
    target.write(overwrite, *users(range(10, 12)))  # the source failed: no state, no COMPLETE
    assert target.rows("users", "id") == [(1,), (2,), (3,), (3,), (4,)]
    target.write(overwrite, *users(range(10, 12)), complete("users"))
    assert target.rows("users", "id") == [(10,), (11,)]


def test_an_overwrite_whose_attempt_fails_after_a_state_keeps_the_old_rows_until_its_retry_completes(
    target: Target,
) -> None:
    # A CDK source checkpoints a full-refresh stream after each page. The job's first attempt
    # read two pages, checkpointed the first, and failed: before, the first page replaced the
    # table, and a job whose last attempt failed so left a partial table, the old rows gone.
    target.write(
        target.catalog(stream("users", USERS, "overwrite", sync_id=1)),
        *users(range(1, 3), "old"),
        complete("users"),
    )
    job = target.catalog(stream("users", USERS, "overwrite", sync_id=2))
    page_1, page_2 = users(range(10, 12), "new"), users(range(12, 14), "new")
    found = target.write(job, *page_1, state("users", {"next_page_token": 2}), *page_2[:1])  # then failed
    assert echoed(found) == [{"next_page_token": 2}]
    assert target.rows("users", "id, v") == [(1, "old"), (2, "old")]  # exactly as they were
    assert target.staged("users") == 2  # the checkpointed page, not what came after its state

    # The retry resumes after page 1 and completes: the table is the new sync's, each row once.
    target.write(job, *page_2, complete("users"))
    assert target.rows("users", "id, v") == [(i, "new") for i in range(10, 14)]
    assert target.staged("users") == 0
    # The next job's sync replaces the table whole, as before.
    target.write(
        target.catalog(stream("users", USERS, "overwrite", sync_id=3)),
        *users(range(20, 21)),
        complete("users"),
    )
    assert target.rows("users", "id") == [(20,)]


def test_a_retry_of_an_overwrite_never_checkpointed_starts_again_without_doubling(target: Target) -> None:
    """Each stream's records after its own last state are left out of what is staged: a state of
    another stream, or the end of a failed attempt, commits none of them."""

    def both(sync_id: int) -> Path:
        return target.catalog(
            *(stream(name, USERS, "overwrite", sync_id=sync_id) for name in ("users", "items"))
        )

    target.write(both(6), *users(range(1, 2), "old"), complete("users"))
    job = both(7)
    items = [record("items", {"id": i, "v": "new"}) for i in range(1, 5)]
    # items checkpointed after 2 records, then 1 more; users never checkpointed; then failed.
    target.write(
        job, *users(range(10, 13)), *items[:2], state("items", {"p": 2}), items[2], *users(range(13, 14))
    )
    assert target.rows("users", "id") == [(1,)]
    assert (target.staged("users"), target.staged("items")) == (0, 2)
    # The retry: users from scratch (no state), items after its state.
    target.write(job, *users(range(10, 14)), *items[2:], complete("users"), complete("items"))
    assert target.rows("users", "id") == [(i,) for i in range(10, 14)]
    assert target.rows("items", "id") == [(i,) for i in range(1, 5)]


def test_a_new_job_after_a_failed_one_does_not_pick_up_its_staged_rows(target: Target) -> None:
    target.write(
        target.catalog(stream("users", USERS, "overwrite", sync_id=1)), *users(range(1, 3)), complete("users")
    )
    failed = target.catalog(stream("users", USERS, "overwrite", sync_id=2))
    target.write(failed, *users(range(10, 12)), state("users", {"page": 2}))  # its last attempt failed
    assert target.staged("users") == 2
    target.write(
        target.catalog(stream("users", USERS, "overwrite", sync_id=3)),
        *users(range(30, 32)),
        state("users", {"page": 2}),
        complete("users"),
    )
    assert target.rows("users", "id") == [(30,), (31,)]
    assert target.staged("users") == 0  # the failed job's staging is gone too


def test_a_table_an_earlier_attempt_of_the_job_put_in_place_is_added_to_by_its_retry(target: Target) -> None:
    """A table already holding the job's rows (marked with its sync_id): the stream completed and
    then the attempt failed, or an earlier version of Ferryman, which swapped at the stream's
    first state, ran the attempt before an upgrade. The job's retry resumes after them, so it adds
    to the table; a later job that fails leaves the table as it is."""
    job = target.catalog(stream("users", USERS, "overwrite", sync_id=2))
    target.write(job, *users(range(10, 12)), complete("users"))
    target.write(job, *users(range(12, 14)), state("users", {"page": 3}), complete("users"))  # the retry
    assert target.rows("users", "id") == [(10,), (11,), (12,), (13,)]
    failed = target.catalog(stream("users", USERS, "overwrite", sync_id=3))
    target.write(failed, *users(range(20, 22)), state("users", {"page": 2}))
    assert target.rows("users", "id") == [(10,), (11,), (12,), (13,)]
    assert target.staged("users") == 2


def test_an_overwrite_retry_after_a_kill_mid_load_stores_each_record_once(target: Target) -> None:
    """SIGKILL while the destination takes in ~40 MB after its last state (past its 32 MB flush:
    it has spilled, copied or written them), then the next attempt of the same sync resends
    everything after the last echoed state and completes."""
    pad = "p" * 1000
    catalog = target.catalog(stream("users", {**USERS, "pad": {"type": "string"}}, "overwrite", sync_id=9))

    def batch(ids: range) -> list[dict[str, Any]]:
        return [record("users", {"id": i, "v": "x", "pad": pad}) for i in ids]

    proc = target.start(catalog)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(messages_in(*batch(range(1, 1001)), state("users", {"n": 1000})))
    proc.stdin.flush()
    assert read_until_state(proc.stdout)["state"]["stream"]["stream_state"] == {"n": 1000}
    proc.stdin.write(messages_in(*batch(range(1001, 41_001))))
    proc.stdin.flush()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()
    assert target.staged("users") == 1000

    target.write(catalog, *batch(range(1001, 41_001)), complete("users"))
    assert [row[0] for row in target.rows("users", "id")] == list(range(1, 41_001))  # each once


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_an_append_whose_attempt_fails_after_a_state_stores_each_record_once_after_its_retry(
    target: Target, mode: str
) -> None:
    """The attempt checkpointed 2 records, read 2 more and failed (no COMPLETE): before, those 2
    were committed at the end of its input, and the retry, resuming from the state, stored them
    again. append_dedup holds nothing in the typed destinations (its merge replaces the copies);
    JSON lines have no keys, so their append_dedup is append."""
    catalog = target.catalog(stream("users", USERS, mode, sync_id=2))
    found = target.write(catalog, *users(range(1, 3)), state("users", {"cursor": 2}), *users(range(3, 5)))
    assert echoed(found) == [{"cursor": 2}]
    held = mode == "append" or not target.typed
    assert target.rows("users", "id") == [(i,) for i in (range(1, 3) if held else range(1, 5))]
    target.write(catalog, *users(range(3, 6)), state("users", {"cursor": 5}), complete("users"))
    assert target.rows("users", "id") == [(i,) for i in range(1, 6)]  # each once


def test_an_append_never_checkpointed_stores_nothing_of_a_failed_attempt(target: Target) -> None:
    """A stream without a state, beside one with a state (which does not cover it): a failed
    attempt stores nothing of it; its retry reads it all again and completes."""
    catalog = target.catalog(stream("users", USERS), stream("items", USERS))
    items = [record("items", {"id": i, "v": "x"}) for i in range(1, 4)]
    target.write(catalog, *users(range(1, 4)), *items[:2], state("items", {"cursor": 2}), *users(range(4, 5)))
    assert target.rows("users", "id") == []
    assert target.rows("items", "id") == [(1,), (2,)]
    target.write(catalog, *users(range(1, 5)), items[2], complete("users"), complete("items"))
    assert target.rows("users", "id") == [(i,) for i in range(1, 5)]
    assert target.rows("items", "id") == [(i,) for i in range(1, 4)]


def test_an_append_failing_after_flushing_past_its_state_stores_each_record_once(target: Target) -> None:
    """~40 MB after the last state (past the 32 MB flush: DuckDB has spilled them, PostgreSQL
    spilled them and copied them under a savepoint, JSON lines written them to the file), then the input ends
    without COMPLETE: the source failed. Its retry sends them again."""
    pad = "p" * 1000
    catalog = target.catalog(stream("users", {**USERS, "pad": {"type": "string"}}, "append"))

    def batch(ids: range) -> list[dict[str, Any]]:
        return [record("users", {"id": i, "v": "x", "pad": pad}) for i in ids]

    found = target.write(
        catalog, *batch(range(1, 1001)), state("users", {"n": 1000}), *batch(range(1001, 41_001))
    )
    assert echoed(found) == [{"n": 1000}]
    assert [row[0] for row in target.rows("users", "id")] == list(range(1, 1001))
    if not target.typed:  # cut back at the end of the input: no note of a size left to cut to
        assert list((target.tmp_path / "files").glob("*.ferryman-committed")) == []
    target.write(catalog, *batch(range(1001, 41_001)), complete("users"))
    assert [row[0] for row in target.rows("users", "id")] == list(range(1, 41_001))  # each once


def test_two_appends_held_past_a_flush_commit_only_what_their_states_cover(target: Target) -> None:
    """~20 MB of each of two streams after their states, together past the 32 MB flush (PostgreSQL
    copies both into the table under one savepoint), then a state covering one of them and the
    end of a failed attempt: that one's records are stored, the other's wait for its retry, which
    stores each record once."""
    pad = "p" * 1000
    schema = {**USERS, "pad": {"type": "string"}}
    catalog = target.catalog(stream("users", schema), stream("items", schema))

    def batch(name: str, ids: range) -> list[dict[str, Any]]:
        return [record(name, {"id": i, "v": "x", "pad": pad}) for i in ids]

    mixed = [
        m
        for pair in zip(batch("users", range(2, 20_002)), batch("items", range(2, 20_002)), strict=True)
        for m in pair
    ]
    proc = target.start(catalog)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(
        messages_in(*batch("users", range(1, 2)), state("users", {"n": 1}), *batch("items", range(1, 2)))
    )
    proc.stdin.flush()
    assert read_until_state(proc.stdout)["state"]["stream"]["stream_state"] == {"n": 1}
    proc.stdin.write(messages_in(state("items", {"n": 1})))
    proc.stdin.flush()
    assert read_until_state(proc.stdout)["state"]["stream"]["stream_state"] == {"n": 1}
    # No state waits when the 32 MB flush comes: both streams' records after their states are held.
    found, _ = proc.communicate(messages_in(*mixed, state("users", {"n": 20_001})), timeout=120)
    assert proc.returncode == 0
    assert echoed(parse(found)) == [{"n": 20_001}]
    assert [row[0] for row in target.rows("users", "id")] == list(range(1, 20_002))
    assert target.rows("items", "id") == [(1,)]
    target.write(catalog, *batch("items", range(2, 20_002)), complete("users"), complete("items"))
    assert [row[0] for row in target.rows("items", "id")] == list(range(1, 20_002))  # each once
    assert [row[0] for row in target.rows("users", "id")] == list(range(1, 20_002))


def test_append_dedup_keeps_the_last_record_per_key_across_syncs(typed: Target) -> None:
    catalog = typed.catalog(stream("users", USERS, "append_dedup"))
    typed.write(
        catalog,
        record("users", {"id": 1, "v": "a"}),
        record("users", {"id": 2, "v": "b"}),
        record("users", {"id": 1, "v": "c"}),
        state("users", 1),
    )
    typed.write(catalog, record("users", {"id": 2, "v": "d"}), record("users", {"id": 3, "v": "e"}))
    assert typed.rows("users", "id, v") == [(1, "c"), (2, "d"), (3, "e")]


def test_append_dedup_keeps_the_latest_cursor_and_applies_cdc_deletions(typed: Target) -> None:
    properties = {
        "id": {"type": "integer"},
        "v": {"type": "string"},
        "updated": {"type": "integer"},
        "_ab_cdc_deleted_at": {"type": ["null", "string"], "format": "date-time"},
    }
    catalog = typed.catalog(stream("users", properties, "append_dedup", cursor="updated"))
    typed.write(
        catalog,
        record("users", {"id": 1, "v": "newest", "updated": 5}),
        record("users", {"id": 1, "v": "older, arrived later", "updated": 3}),
        record("users", {"id": 2, "v": "kept", "updated": 1}),
        record("users", {"id": 3, "v": "to delete", "updated": 1}),
    )
    typed.write(
        catalog,
        record("users", {"id": 1, "v": "still older", "updated": 4}),
        record("users", {"id": 2, "v": "replaced", "updated": 2}),
        record("users", {"id": 3, "updated": 2, "_ab_cdc_deleted_at": "2024-01-01T00:00:00Z"}),
        record("users", {"id": 4, "updated": 2, "_ab_cdc_deleted_at": "2024-01-01T00:00:00Z"}),
    )
    assert typed.rows("users", "id, v, updated") == [(1, "newest", 5), (2, "replaced", 2)]


def test_append_dedup_into_an_empty_table_keeps_the_last_arrival_of_each_key(typed: Target) -> None:
    """Without a cursor the last record received wins, whether it deletes or not (PostgreSQL
    copies a key's first record straight into an empty table and merges the later ones)."""
    properties = {**USERS, "_ab_cdc_deleted_at": {"type": ["null", "string"], "format": "date-time"}}
    catalog = typed.catalog(stream("users", properties, "append_dedup"))
    gone = "2024-01-01T00:00:00Z"
    typed.write(
        catalog,
        record("users", {"id": 1, "v": "first"}),
        record("users", {"id": 1, "_ab_cdc_deleted_at": gone}),
        record("users", {"id": 2, "_ab_cdc_deleted_at": gone}),
        record("users", {"id": 2, "v": "back"}),
        record("users", {"id": 3, "v": "a"}),
        state("users", 1),
        record("users", {"id": 3, "v": "b"}),
        record("users", {"id": 4, "v": "c"}),
    )
    assert typed.rows("users", "id, v") == [(2, "back"), (3, "b"), (4, "c")]


def test_append_dedup_after_append_reduces_the_stored_rows_to_one_per_key(typed: Target) -> None:
    """Switching a stream from append to append_dedup: the key is unique from the first dedup
    sync on, the stored duplicates reduced to their latest row by cursor."""
    properties = {**USERS, "updated": {"type": "integer"}}
    append = typed.catalog(stream("users", properties, "append", cursor="updated"))
    typed.write(
        append,
        record("users", {"id": 1, "v": "new", "updated": 2}),
        record("users", {"id": 1, "v": "old", "updated": 1}),
        record("users", {"id": 2, "v": "only", "updated": 1}),
        complete("users"),
    )
    dedup = typed.catalog(stream("users", properties, "append_dedup", cursor="updated"))
    typed.write(dedup, record("users", {"id": 3, "v": "added", "updated": 1}))
    if typed.module == "destination_duckdb":  # DuckDB merges only the keys a sync brings
        return
    assert typed.rows("users", "id, v") == [(1, "new"), (2, "only"), (3, "added")]
    typed.write(dedup, record("users", {"id": 1, "v": "newest", "updated": 3}))
    assert typed.rows("users", "id, v") == [(1, "newest"), (2, "only"), (3, "added")]


# --- what a state confirms ----------------------------------------------------------------------


def read_until_state(stdout: Any) -> dict[str, Any]:
    while line := stdout.readline():
        message = orjson.loads(line)
        if message["type"] == "STATE":
            return message  # type: ignore[no-any-return]
    raise AssertionError("the destination ended without echoing a state")


@pytest.mark.parametrize("mode", ["append", "append_dedup", "overwrite"])
def test_a_state_is_echoed_only_once_every_record_before_it_is_stored(target: Target, mode: str) -> None:
    proc = target.start(target.catalog(stream("users", USERS, mode, sync_id=1)))
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(messages_in(*users(range(1, 2001)), state("users", {"n": 2000})))
        proc.stdin.flush()
        assert read_until_state(proc.stdout)["state"]["stream"]["stream_state"] == {"n": 2000}
        # The destination is still running, its input open: what the state confirmed is readable
        # (under overwrite in the sync's staging table, until the stream completes).
        stored = target.staged("users") if mode == "overwrite" else len(target.rows("users", "id"))
        assert stored == 2000
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
        proc.stdout.close()


def test_a_destination_whose_reader_is_gone_commits_nothing_more_and_its_retry_stores_each_record_once(
    target: Target,
) -> None:
    """The worker reading the destination's echoes is SIGKILLed: the destination's input ends and
    nobody can save a state it would echo. It used to commit what those states covered anyway,
    and the retry, resuming from the last state the worker saved, stored it all again (under
    append, twice). Now it stops committing once its output has no reader; echoed states before
    that stay committed."""
    catalog = target.catalog(stream("users", USERS, "append"))
    proc = target.start(catalog)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(messages_in(*users(range(1, 101)), state("users", {"n": 100})))
    proc.stdin.flush()
    assert read_until_state(proc.stdout)["state"]["stream"]["stream_state"] == {"n": 100}  # saved
    proc.stdout.close()  # the worker is gone: its end of the pipe closes
    proc.stdin.write(messages_in(*users(range(101, 301)), state("users", {"n": 300})))
    proc.stdin.close()
    assert proc.wait(timeout=60) != 0
    assert [row[0] for row in target.rows("users", "id")] == list(range(1, 101))

    found = target.write(catalog, *users(range(101, 301)), state("users", {"n": 300}))
    assert echoed(found) == [{"n": 300}]
    assert [row[0] for row in target.rows("users", "id")] == list(range(1, 301))


@pytest.mark.parametrize("mode", ["append", "append_dedup"])
def test_a_destination_killed_mid_load_loses_nothing_and_doubles_nothing(target: Target, mode: str) -> None:
    """SIGKILL while the destination takes in ~40 MB after its last state (past its 32 MB flush:
    DuckDB has spilled, PostgreSQL has copied into an open transaction), then the next attempt
    sends again everything after the last echoed state, as Ferryman does."""
    pad = "p" * 1000
    catalog = target.catalog(stream("users", {**USERS, "pad": {"type": "string"}}, mode))

    def batch(ids: range) -> list[dict[str, Any]]:
        return [record("users", {"id": i, "v": "x", "pad": pad}) for i in ids]

    proc = target.start(catalog)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(messages_in(*batch(range(1, 1001)), state("users", {"n": 1000})))
    proc.stdin.flush()
    assert read_until_state(proc.stdout)["state"]["stream"]["stream_state"] == {"n": 1000}
    proc.stdin.write(messages_in(*batch(range(1001, 41_001))))
    proc.stdin.flush()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    proc.stdout.close()

    found = target.write(catalog, *batch(range(1001, 41_001)), state("users", {"n": 41_000}))
    assert echoed(found) == [{"n": 41_000}]
    # Each once. JSON lines wrote what they flushed straight to the file: the retry cut it back
    # to the size its note says the file had at the last state.
    assert [row[0] for row in target.rows("users", "id")] == list(range(1, 41_001))


def test_a_global_state_over_many_streams_of_one_shape_stores_each_streams_records_in_its_own_table(
    typed: Target,
) -> None:
    """A CDC source of one table per tenant: many streams of the same shape, a few records each,
    one GLOBAL state over all. DuckDB loads such streams together (one typed read for all, one
    insert per table); each table must still get exactly its own records, held ones included."""
    wide = {**USERS, "w": {"type": "number"}}
    old = typed.catalog(*(stream(f"o{i}", USERS, "overwrite", sync_id=1) for i in range(2)))
    typed.write(
        old, *(record(f"o{i}", {"id": 100 + i, "v": "old"}) for i in range(2)), complete("o0"), complete("o1")
    )
    catalog = typed.catalog(
        *(stream(f"a{i}", USERS) for i in range(4)),
        *(stream(f"o{i}", USERS, "overwrite", sync_id=2) for i in range(2)),
        stream("d0", wide),
    )
    shared = {
        "type": "STATE",
        "state": {"type": "GLOBAL", "global": {"shared_state": {"lsn": 7}, "stream_states": []}},
    }
    before = [record(f"a{i}", {"id": 10 * i + n, "v": f"a{i}"}) for n in range(1, 3) for i in range(4)]
    before += [record(f"o{i}", {"id": 20 + i, "v": f"o{i}"}) for i in range(2)]
    before.append(record("d0", {"id": 1, "v": "d", "w": 1.5}))
    after = [record("a0", {"id": 99, "v": "held"}), record("o0", {"id": 98, "v": "o0"})]
    found = typed.write(catalog, *before, shared, *after, complete("o0"))
    assert [m["state"]["global"]["shared_state"] for m in found if m["type"] == "STATE"] == [{"lsn": 7}]
    for i in range(4):  # a0's record after the state was held and dropped: a0 did not complete
        assert typed.rows(f"a{i}", "id, v") == [(10 * i + 1, f"a{i}"), (10 * i + 2, f"a{i}")]
    assert typed.rows("o0", "id, v") == [(20, "o0"), (98, "o0")]
    assert typed.rows("o1", "id, v") == [(101, "old")]  # not completed: the old rows stay
    assert typed.rows("d0", "id, v, w") == [(1, "d", 1.5)]


# --- schema changes and values that do not fit --------------------------------------------------


def test_a_new_property_adds_a_column_and_a_wider_type_widens_it(typed: Target) -> None:
    first = {"id": {"type": "integer"}, "n": {"type": "integer"}, "flag": {"type": "boolean"}}
    typed.write(
        typed.catalog(stream("items", first)),
        record("items", {"id": 1, "n": 7, "flag": True}),
        complete("items"),
    )

    second = {**first, "n": {"type": "number"}, "flag": {"type": "string"}, "note": {"type": "string"}}
    typed.write(
        typed.catalog(stream("items", second)),
        record("items", {"id": 2, "n": 2.5, "flag": "maybe", "note": "new"}),
        complete("items"),
    )
    types = typed.types("items")
    assert types["n"] in ("double", "double precision")
    assert types["flag"] in ("varchar", "text")
    assert types["note"] in ("varchar", "text")
    assert typed.rows("items", "id, n, flag, note") == [(1, 7.0, "true", None), (2, 2.5, "maybe", "new")]

    # A narrower type later keeps the wide column: nothing stored is rewritten.
    typed.write(
        typed.catalog(stream("items", first)),
        record("items", {"id": 3, "n": 4, "flag": False}),
        complete("items"),
    )
    assert typed.types("items")["n"] in ("double", "double precision")
    assert typed.rows("items", "id, flag")[2] == (3, "false")


def test_a_value_that_does_not_fit_is_null_and_listed_in_airbyte_meta(typed: Target) -> None:
    properties = {
        "id": {"type": "integer"},
        "n": {"type": "number"},
        "ok": {"type": "boolean"},
        "day": {"type": "string", "format": "date"},
        "at": {"type": "string", "format": "date-time", "airbyte_type": "timestamp_with_timezone"},
        "name": {"type": "string"},
        "tags": {"type": "array"},
    }
    catalog = typed.catalog(stream("items", properties, sync_id=42, generation_id=3))
    good = {"id": 1, "n": 1.5, "ok": True, "day": "2024-01-31", "at": "2024-01-01T10:00:00+02:00"}
    bad = {"id": "seven", "n": "many", "ok": "yes", "day": "2024-02-30", "at": "soon", "name": 12}
    found = typed.write(
        catalog,
        record("items", {**good, "name": "a", "tags": [1]}),
        record("items", {**bad, "tags": {"a": 1}}),
        state("items", 1),
    )
    assert echoed(found) == [1]  # the sync goes on
    rows = typed.rows("items", "id, n, ok, day, name, tags, _airbyte_meta, _airbyte_generation_id")
    meta = {row[4]: row[6] for row in rows}
    assert [row[:6] for row in rows] == [
        (1, 1.5, True, rows[0][3], "a", [1]),
        (None, None, None, None, "12", {"a": 1}),
    ]
    assert str(rows[0][3]) == "2024-01-31"
    assert meta["a"] == {"changes": [], "sync_id": 42}
    assert meta["12"] == {
        "changes": [
            {"field": name, "change": "NULLED", "reason": "DESTINATION_TYPECAST_ERROR"}
            for name in ("id", "n", "ok", "day", "at")
        ],
        "sync_id": 42,
    }
    assert {row[7] for row in rows} == {3}
    (at,) = typed.rows("items", '"at"')[0:1]  # AT is a keyword: quoted
    assert at[0] is not None and at[0].utcoffset().total_seconds() == 0 and at[0].hour == 8


def test_column_names_are_normalised_the_same_way_everywhere(typed: Target) -> None:
    properties = {
        "id": {"type": "integer"},
        "userName": {"type": "string"},
        "first name": {"type": "string"},
        "2fa": {"type": "boolean"},
        "Name": {"type": "string"},
        "name": {"type": "string"},
    }
    typed.write(
        typed.catalog(stream("people", properties)),
        record(
            "people", {"id": 1, "userName": "ada", "first name": "Ada", "2fa": True, "Name": "A", "name": "a"}
        ),
        complete("people"),
    )
    columns = set(typed.types("people"))
    assert {"username", "first_name", "_2fa", "name"} <= columns
    renamed = [column for column in columns if column.startswith("name_")]
    assert len(renamed) == 1 and len(renamed[0]) == len("name_") + 8
    assert typed.rows("people", f"username, first_name, _2fa, name, {renamed[0]}") == [
        ("ada", "Ada", True, "A", "a")
    ]


def test_the_state_messages_come_back_as_they_were_sent(target: Target) -> None:
    catalog = target.catalog(stream("users", USERS, "append"))
    sent = [state("users", {"cursor": i, "deep": {"list": [i, None]}}) for i in range(3)]
    found = target.write(catalog, *users(range(1, 3)), sent[0], *users(range(3, 5)), sent[1], sent[2])
    assert [m for m in found if m["type"] == "STATE"] == [orjson.loads(orjson.dumps(s)) for s in sent]
    assert parse(messages_in(*sent)) == [m for m in found if m["type"] == "STATE"]


# --- lines msgspec refuses ------------------------------------------------------------------------
# Written as text: orjson writes neither a NaN nor a lone surrogate escape. Ferryman's worker
# fails a source sending a NaN and never hands such a RECORD on (tests/e2e/test_cli_unreadable_
# messages.py); these feed the destination directly, as another platform could.


def _feed(target: Target, catalog: Path, *lines: bytes) -> subprocess.CompletedProcess[bytes]:
    data = b"".join(line + b"\n" for line in lines)
    return subprocess.run(target.command(catalog), input=data, capture_output=True, timeout=120)


def test_a_record_it_cannot_store_fails_the_destination_in_one_line(target: Target) -> None:
    """Before: the RECORD was skipped unread, the state after it echoed, and the destination
    exited 0 with the record missing."""
    catalog = target.catalog(stream("users", USERS, "append"))
    nan = b'{"type":"RECORD","record":{"stream":"users","data":{"id":7,"v":NaN},"emitted_at":1}}'
    done = _feed(target, catalog, orjson.dumps(users(range(1, 2))[0]), nan, orjson.dumps(state("users", 1)))

    assert done.returncode == 1
    found = parse(done.stdout)
    assert echoed(found) == []  # the state after it is never confirmed
    [error] = [m["trace"]["error"] for m in found if m["type"] == "TRACE"]
    module = target.module.replace("_", "-")
    assert error["message"] == (
        f"{module} failed: the source sent a RECORD of stream 'users' that is not valid JSON:"
        " NaN is not a JSON number"
    )
    assert error["failure_type"] == "system_error"


def test_a_line_that_is_no_message_is_skipped_and_logged(target: Target) -> None:
    """Before: skipped without a word."""
    catalog = target.catalog(stream("users", USERS, "append"))
    done = _feed(
        target, catalog, b"plain text", orjson.dumps(users(range(1, 2))[0]), orjson.dumps(state("users", 1))
    )

    assert done.returncode == 0, done.stderr
    found = parse(done.stdout)
    assert echoed(found) == [1]
    logs = [m["log"]["message"] for m in found if m["type"] == "LOG"]
    module = target.module.replace("_", "-")
    assert f"{module}: skipped 1 line of input that is no protocol message" in logs
    assert target.rows("users", "id") == [(1,)]


# --- destination-postgres's config --------------------------------------------------------------


def check(tmp_path: Path, config: dict[str, Any]) -> dict[str, Any]:
    path = tmp_path / "check.json"
    path.write_bytes(orjson.dumps(config))
    done = subprocess.run(
        command("destination_postgres", "check", "--config", path), capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    (message,) = parse(done.stdout)
    return message["connectionStatus"]  # type: ignore[no-any-return]


def test_postgres_check_by_fields_or_url_and_never_shows_the_password(
    tmp_path: Path, pg_database: str
) -> None:
    fields = {
        "host": PG_HOST,
        "port": PG_PORT,
        "database": pg_database,
        "username": PG_USER,
        "ssl_mode": {"mode": "disable"},
    }
    assert check(tmp_path, fields)["status"] == "SUCCEEDED"
    url = f"postgresql://{PG_USER}:hunter2-secret@{PG_HOST}:{PG_PORT}/{pg_database}?sslmode=disable"
    assert check(tmp_path, {"url": url})["status"] == "SUCCEEDED"

    refused = check(tmp_path, {**fields, "port": 1, "password": "hunter2-secret"})
    assert refused["status"] == "FAILED" and "cannot connect to PostgreSQL at" in refused["message"]
    bad_url = check(tmp_path, {"url": "postgresql://u:hunter2-secret@127.0.0.1:1/x?sslmode=nonsense"})
    assert bad_url["status"] == "FAILED"
    for status in (refused, bad_url):
        assert "hunter2-secret" not in status["message"]
    assert (
        check(tmp_path, {"host": PG_HOST})["message"] == "config field 'database' is required (or give a url)"
    )


def _deleted_files_in(pid: int, directory: Path) -> list[int]:
    """The sizes of the files ``pid`` holds open in ``directory`` that have no name any more."""
    sizes = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith(f"{directory}/") and os.readlink(fd).endswith(" (deleted)"):
                sizes.append(os.stat(fd).st_size)
    return sizes


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads the destination's open files in /proc")
@pytest.mark.parametrize("mode", ["append", "overwrite"])
def test_postgres_holds_the_records_after_a_state_on_its_own_disk_and_sends_them_once(
    tmp_path: Path, pg_database: str, mode: str
) -> None:
    """~40 MB of a stream after its last state, past the 32 MB flush, while another stream's state
    makes the destination commit: they wait in a file on the destination's disk (TMPDIR), not in a
    temporary table on the server, which stored such a stream twice (copied in, then moved to the
    table once a state covered it). Killed, the destination leaves no file behind; the retry
    stores each record once."""
    target = PostgresTarget(tmp_path, pg_database)
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    pad = "p" * 1000
    schema = {**USERS, "pad": {"type": "string"}}
    catalog = target.catalog(stream("users", schema, mode, sync_id=9), stream("items", USERS))

    def batch(ids: range) -> list[dict[str, Any]]:
        return [record("users", {"id": i, "v": "x", "pad": pad}) for i in ids]

    proc = subprocess.Popen(
        target.command(catalog),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(spill_dir)},
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(messages_in(*batch(range(1, 1001)), state("users", {"n": 1000})))
        proc.stdin.flush()
        assert read_until_state(proc.stdout)["state"]["stream"]["stream_state"] == {"n": 1000}
        proc.stdin.write(
            messages_in(*batch(range(1001, 41_001)), record("items", {"id": 1}), state("items", {"n": 1}))
        )
        proc.stdin.flush()
        assert read_until_state(proc.stdout)["state"]["stream"]["stream_state"] == {"n": 1}

        assert target.query("SELECT relname FROM pg_class WHERE relpersistence = 't' AND relkind = 'r'") == []
        held = _deleted_files_in(proc.pid, spill_dir)
        assert len(held) == 1 and held[0] >= 40_000 * len(pad)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    assert list(spill_dir.iterdir()) == []
    assert target.rows("items", "id") == [(1,)]
    if mode == "append":
        assert [row[0] for row in target.rows("users", "id")] == list(range(1, 1001))
    else:
        assert target.staged("users") == 1000

    target.write(catalog, *batch(range(1001, 41_001)), complete("users"), complete("items"))
    assert [row[0] for row in target.rows("users", "id")] == list(range(1, 41_001))  # each once


# --- where the spill files go, and a full disk there --------------------------------------------


def spill_config(target: PostgresTarget, directory: Path | str) -> None:
    target.config.write_bytes(orjson.dumps({**target.config_body(), "spill_directory": str(directory)}))


def test_postgres_spec_offers_the_spill_directory() -> None:
    done = subprocess.run(command("destination_postgres", "spec"), capture_output=True, timeout=60)
    (message,) = parse(done.stdout)
    field = message["spec"]["connectionSpecification"]["properties"]["spill_directory"]
    assert field["type"] == "string" and "temporary directory" in field["description"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads the destination's open files in /proc")
def test_postgres_holds_the_records_after_a_state_in_the_configured_spill_directory(
    tmp_path: Path, pg_database: str
) -> None:
    """Not in TMPDIR (often a small RAM disk): in ``spill_directory``, while they are held, and
    nothing is left there once the sync ends."""
    target = PostgresTarget(tmp_path, pg_database)
    spill_dir, tmp_dir = tmp_path / "spill", tmp_path / "tmp"
    spill_dir.mkdir()
    tmp_dir.mkdir()
    spill_config(target, f"{spill_dir}/")
    catalog = target.catalog(stream("users", USERS), stream("items", USERS))
    proc = subprocess.Popen(
        target.command(catalog),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp_dir)},
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(messages_in(*users(range(1, 11)), state("users", {"n": 10})))
        proc.stdin.flush()
        assert read_until_state(proc.stdout)["state"]["stream"]["stream_state"] == {"n": 10}
        # Another stream's state commits while users 11-500 wait for one of their own.
        proc.stdin.write(
            messages_in(*users(range(11, 501)), record("items", {"id": 1}), state("items", {"n": 1}))
        )
        proc.stdin.flush()
        assert read_until_state(proc.stdout)["state"]["stream"]["stream_state"] == {"n": 1}
        held = _deleted_files_in(proc.pid, spill_dir)
        assert len(held) == 1 and held[0] > 0
        assert _deleted_files_in(proc.pid, tmp_dir) == [] and list(tmp_dir.iterdir()) == []
        proc.stdin.write(messages_in(complete("users"), complete("items")))
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
        proc.stdout.close()
    assert list(spill_dir.iterdir()) == []
    assert [row[0] for row in target.rows("users", "id")] == list(range(1, 501))


def test_postgres_refuses_a_spill_directory_it_cannot_use_in_one_line(
    tmp_path: Path, pg_database: str
) -> None:
    target = PostgresTarget(tmp_path, pg_database)
    catalog = target.catalog(stream("users", USERS))
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for directory, problem in [
        (tmp_path / "missing", "does not exist"),
        (a_file, "is not a directory"),
    ]:
        status = check(tmp_path, {**target.config_body(), "spill_directory": str(directory)})
        expected = (
            f"config field 'spill_directory': {directory} {problem}; give an existing directory the"
            " destination can write to, or leave the field out for the system's temporary directory"
        )
        assert status == {"status": "FAILED", "message": expected}

        spill_config(target, directory)
        done = subprocess.run(
            target.command(catalog), input=messages_in(*users(range(1, 3))), capture_output=True, timeout=60
        )
        assert done.returncode == 1 and done.stderr == b""  # no traceback
        (trace,) = parse(done.stdout)
        assert trace["trace"]["error"]["failure_type"] == "config_error"
        assert trace["trace"]["error"]["message"] == expected
    relative = check(tmp_path, {**target.config_body(), "spill_directory": "spill"})
    assert relative["message"] == "config field 'spill_directory' must be an absolute path, got 'spill'"
    assert target.query("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


@pytest.mark.parametrize("kind", TYPED)
def test_a_full_spill_disk_fails_the_sync_in_one_line_and_the_retry_resumes(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A real full disk (a small tmpfs) where the spill files go: PostgreSQL's spill_directory,
    DuckDB's database directory. The attempt fails saying where and what to do; what its states
    committed stays; once there is room, the retry from the last state stores each record once."""
    if kind == "postgres":
        target: Target = PostgresTarget(tmp_path, request.getfixturevalue("pg_database"))
        disk = small_tmpfs(tmp_path / "spill", "256k")
    else:
        target = DuckDBTarget(tmp_path)
        disk = small_tmpfs(tmp_path / "out", "1m")  # the database file's directory
    pad = "p" * 1000
    catalog = target.catalog(stream("users", {**USERS, "pad": {"type": "string"}}), stream("items", USERS))

    def batch(ids: range) -> list[dict[str, Any]]:
        return [record("users", {"id": i, "v": "x", "pad": pad}) for i in ids]

    with disk as directory:
        if isinstance(target, PostgresTarget):
            spill_config(target, directory)
        proc = target.start(catalog)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(messages_in(*batch(range(1, 11)), state("users", {"n": 10})))
        proc.stdin.flush()
        assert read_until_state(proc.stdout)["state"]["stream"]["stream_state"] == {"n": 10}
        # ~3 MB held after users' state, written to a spill file when items' state commits.
        proc.stdin.write(
            messages_in(*batch(range(11, 3001)), record("items", {"id": 1}), state("items", {"n": 1}))
        )
        proc.stdin.close()
        rest = parse(proc.stdout.read())
        proc.stdout.close()
        assert proc.wait(timeout=60) == 1
        assert echoed(rest) == []
        (trace,) = [m for m in rest if m["type"] == "TRACE"]
        message = trace["trace"]["error"]["message"]
        assert "\n" not in message and "stream 'users': cannot " in message
        assert f" in {directory}" in message and "No space left on device" in message
        assert ("'spill_directory'" if kind == "postgres" else "move the database file") in message
        assert [row[0] for row in target.rows("users", "id")] == list(range(1, 11))

        grow_disk(directory, "64m")
        retry = target.write(
            catalog,
            *batch(range(11, 3001)),
            record("items", {"id": 1}),
            state("items", {"n": 1}),
            complete("users"),
        )
        assert echoed(retry) == [{"n": 1}]
        assert [row[0] for row in target.rows("users", "id")] == list(range(1, 3001))
        assert target.rows("items", "id") == [(1,)]


def test_a_retry_resumes_the_staged_rows_even_when_its_first_attempts_pid_is_now_a_thread(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """destination-duckdb in Docker: pids count from 1 again in each container, so the retry's
    own DuckDB threads hold the pid the failed attempt's destination had (7 or 8 with --init).
    The staging table was taken for a live writer's and left, the retry's empty one swapped in:
    a sync that succeeded left the stream empty (benchmarks/chaos.py --docker, seed 90 round 11).
    Here the first attempt is a real process; a live thread of this test stands for the reused pid
    (the table is renamed to it), since a host cannot make a container's pid numbering."""
    target = make_target("duckdb", tmp_path, request)
    job = target.catalog(stream("users", USERS, "overwrite", sync_id=2))
    target.write(job, *users(range(1, 3)), state("users", {"page": 2}))  # then the attempt failed
    (staging,) = target.query(
        "SELECT table_name FROM information_schema.tables"
        " WHERE starts_with(table_name, '_ferryman_staging_users_')"
    )
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert thread.native_id is not None and thread.native_id != os.getpid()
        target.query(f'ALTER TABLE "{staging[0]}" RENAME TO "_ferryman_staging_users_{thread.native_id}_s2"')
        target.write(job, complete("users"))  # the retry resumes after the state: nothing more
    finally:
        release.set()
        thread.join()

    assert target.rows("users", "id") == [(1,), (2,)]
    assert target.staged("users") == 0


def staging_lock_file(database: Path, schema: str, table: str) -> Path:
    """The lock file of a destination-duckdb staging table, as docs/destinations.md names it."""
    digest = hashlib.sha256(f"{schema}\0{table}".encode()).hexdigest()[:16]
    return database.with_name(f"{database.name}.ferryman-staging-{digest}.lock")


def staging_tables(target: DuckDBTarget) -> list[str]:
    found = target.query(
        "SELECT table_name FROM information_schema.tables"
        " WHERE starts_with(table_name, '_ferryman_staging_users_')"
    )
    return [name for (name,) in found]


def rename_staging(target: DuckDBTarget, name: str, new: str) -> None:
    """Rename a staging table, and its lock file with it."""
    target.query(f'ALTER TABLE "{name}" RENAME TO "{new}"')
    lock = staging_lock_file(target.path, "main", name)
    if lock.exists():  # (Ferryman before session 29 made none)
        lock.rename(staging_lock_file(target.path, "main", new))


@contextlib.contextmanager
def lock_holder(path: Path) -> Iterator[None]:
    """Another process holding the flock on ``path`` until the block ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline() == b"locked\n"
        yield
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
        holder.stdout.close()


def test_a_staging_table_whose_owner_holds_its_lock_is_left_alone_though_no_process_here_has_its_pid(
    tmp_path: Path,
) -> None:
    """Two syncs in Docker overwriting one table of a shared DuckDB file take turns at the file;
    each sees only its own container's pids, so each took the other's live staging table for a
    dead one and dropped it: the other's job then failed, or its retry resumed after a state whose
    rows were gone and swapped in a table without them. A host cannot make a second pid namespace
    here, so the other container's destination is a process holding the staging table's lock,
    and the table is named by a pid no process here has (an exited child's)."""
    target = DuckDBTarget(tmp_path)
    target.write(
        target.catalog(stream("users", USERS, "overwrite", sync_id=1)), *users(range(1, 4)), complete("users")
    )
    # The other sync's first commit (then it goes on, in its own container: here it stops).
    other = target.catalog(stream("users", USERS, "overwrite", sync_id=2))
    target.write(other, *users(range(10, 12)), state("users", {"page": 1}))
    gone = subprocess.Popen(["true"])
    gone.wait()
    (staged,) = staging_tables(target)
    elsewhere = f"_ferryman_staging_users_{gone.pid}_s2"
    rename_staging(target, staged, elsewhere)

    with lock_holder(staging_lock_file(target.path, "main", elsewhere)):
        mine = target.catalog(stream("users", USERS, "overwrite", sync_id=3))
        target.write(mine, *users(range(20, 22)), complete("users"))

        assert target.rows("users", "id") == [(20,), (21,)]
        assert staging_tables(target) == [elsewhere]  # the live sync's rows, kept for its swap
        assert target.rows(elsewhere, "id") == [(10,), (11,)]

    # Its owner gone, the next overwrite drops it, and no lock file is left.
    target.write(
        target.catalog(stream("users", USERS, "overwrite", sync_id=4)),
        *users(range(30, 31)),
        complete("users"),
    )
    assert target.rows("users", "id") == [(30,)]
    assert staging_tables(target) == []
    assert (
        sorted(path.name for path in target.path.parent.iterdir() if ".ferryman-staging-" in path.name) == []
    )


def test_a_retry_takes_over_its_staged_rows_when_nobody_holds_their_lock_though_their_pid_is_alive_here(
    tmp_path: Path,
) -> None:
    """The failed attempt ran in another container, whose destination had a pid that a live
    process here has too (here: this test's own). It is gone: its lock file is there, unlocked,
    so the retry takes over its staged rows and resumes after its state. By the pid, the rows were
    taken for a live writer's and left behind, and the retry swapped in a table without them."""
    target = DuckDBTarget(tmp_path)
    job = target.catalog(stream("users", USERS, "overwrite", sync_id=2))
    target.write(job, *users(range(1, 3)), state("users", {"page": 2}))  # then the attempt failed
    (staged,) = staging_tables(target)
    reused = f"_ferryman_staging_users_{os.getpid()}_s2"
    rename_staging(target, staged, reused)  # its lock file, left by its owner, with it

    target.write(job, *users(range(3, 4)), complete("users"))  # the retry, after the state

    assert target.rows("users", "id") == [(1,), (2,), (3,)]
    assert staging_tables(target) == []
    assert (
        sorted(path.name for path in target.path.parent.iterdir() if ".ferryman-staging-" in path.name) == []
    )
