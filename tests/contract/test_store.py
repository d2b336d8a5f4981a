"""The store contract, run against SQLite and Postgres alike (fixtures in store_support.py)."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ferryman.engines.execution import decide_retry
from ferryman.errors import ConfigSpecError, UserInputError
from ferryman.jobs.failures import FailureOrigin, FailureReason, FailureType
from ferryman.jobs.retry import RetryPolicy
from ferryman.jobs.states import AttemptStatus, IllegalTransition, JobStatus, JobType
from ferryman.service import JobService
from ferryman.store import (
    AlreadyExists,
    ConnectionBusy,
    NotFound,
    SqlJobStore,
    StreamStat,
    database_url,
    open_store,
)
from ferryman.store.base import Actor, Connection
from ferryman.store.migrate import VERSION_TABLE, head_revision
from ferryman.store.schema import actors, attempts, connections, jobs
from tests.contract.store_support import (
    ALL_SLOTS,
    T0,
    claim_one,
    end_sessions,
    failure,
    later,
    log_path,
    run_together,
    running_sync,
    store,
    store_url,
)

__all__ = ["store", "store_url"]  # fixtures, imported for pytest


# -- sources, destinations, connections ---------------------------------------------------------


def test_actors_are_created_found_updated_and_deleted(store: SqlJobStore) -> None:
    source = store.create_actor("source", "faker", "pypi:airbyte-source-faker", {"count": 10})
    store.create_actor("destination", "faker", "builtin:jsonl", {})  # same name, other kind: fine
    with pytest.raises(AlreadyExists, match="faker"):
        store.create_actor("source", "faker", "builtin:bench", {})

    assert store.get_actor("source", "faker") == source
    assert store.get_actor("source", str(source.id)) == source
    assert source.created_at.tzinfo is not None and source.created_at.utcoffset().total_seconds() == 0
    store.update_actor_config(source.id, {"count": 20})
    assert store.get_actor("source", "faker").config == {"count": 20}
    assert [a.name for a in store.list_actors("destination")] == ["faker"]

    store.delete_actor("source", source.id)
    with pytest.raises(NotFound):
        store.get_actor("source", "faker")
    with pytest.raises(NotFound):
        store.update_actor_config(source.id, {})
    with pytest.raises(UserInputError, match="actor kind"):
        store.list_actors("sink")


def test_a_config_written_from_a_stale_read_keeps_what_was_written_since(store: SqlJobStore) -> None:
    """Two clients read the source, then each writes: the second one's masked secret stands for
    the secret stored when it writes, and its edit is made from the config stored then (an API
    PATCH), so neither undoes the first one's write. Before, the secret read at first came back."""
    service = JobService(store)
    stale = store.create_actor("source", "s", "builtin:source-bench", {"count": 1, "api_key": "old-secret"})
    service.update_actor(stale, config={"count": 2, "api_key": "new-secret"})

    service.update_actor(stale, config={"count": 3, "api_key": "**********"})
    assert store.get_actor("source", "s").config == {"count": 3, "api_key": "new-secret"}
    service.update_actor(stale, edit=lambda stored: {**stored, "streams": 2})
    assert store.get_actor("source", "s").config == {"count": 3, "api_key": "new-secret", "streams": 2}

    fresh = store.get_actor("source", "s")
    assert store.update_actor_config(fresh.id, {"count": 4}, expected=stale.config) is False
    assert store.get_actor("source", "s") == fresh  # a compare-and-set that missed wrote nothing
    assert store.update_actor_config(fresh.id, {"count": 4}, expected=fresh.config) is True


def test_a_spec_is_kept_on_an_actor_that_still_runs_its_connector(store: SqlJobStore) -> None:
    """An actor made without a spec (by an older Ferryman, or when the connector's ``spec``
    failed) keeps the one fetched later; its config is left as it is, and a spec fetched for a
    connector the actor no longer runs is not kept."""
    spec = {"connectionSpecification": {"properties": {"blob": {"type": "string", "airbyte_secret": True}}}}
    source = store.create_actor("source", "s", "builtin:source-bench", {"count": 1, "blob": "b"})
    other = store.create_actor("source", "o", "builtin:source-bench", {"count": 2})
    assert source.spec is None

    store.set_actor_spec(source.id, "builtin:other", spec)
    assert store.get_actor("source", "s").spec is None
    store.set_actor_spec(source.id, "builtin:source-bench", spec)
    assert store.get_actor("source", "s") == replace(source, spec=spec)
    assert store.get_actor("source", "o") == other  # one actor's spec, not every one of its connector

    # An update of its config fetches the spec as create does: a config it refuses is refused
    # (and nothing is kept), one it allows is stored with the spec.
    service = JobService(store)
    with pytest.raises(ConfigSpecError, match="'count' must be an integer"):
        service.update_actor(other, config={"count": "many"})
    assert store.get_actor("source", "o") == other
    updated = service.update_actor(other, config={"count": 3})
    assert updated.config == {"count": 3}
    assert updated.spec is not None and updated.spec == service.fetch_spec("builtin:source-bench")


def test_connections_name_their_actors_and_keep_them_alive(store: SqlJobStore) -> None:
    source = store.create_actor("source", "s", "builtin:bench", {})
    dest = store.create_actor("destination", "d", "builtin:jsonl", {"path": "/tmp/x"})
    catalog = {"streams": [{"stream": {"name": "users"}, "sync_mode": "full_refresh"}]}
    made = store.create_connection("s-to-d", source.id, dest.id, catalog, prefix="raw_")
    assert (made.status, made.prefix, made.catalog, made.schedule) == ("active", "raw_", catalog, None)
    assert store.get_connection("s-to-d") == made == store.get_connection(str(made.id))
    assert store.list_connections() == [made]

    with pytest.raises(AlreadyExists):
        store.create_connection("s-to-d", source.id, dest.id, catalog)
    with pytest.raises(NotFound, match="no source with id"):
        store.create_connection("wrong-way", dest.id, source.id, catalog)
    with pytest.raises(UserInputError, match="s-to-d"):
        store.delete_actor("source", source.id)

    store.delete_connection(made.id)
    with pytest.raises(NotFound):
        store.get_connection("s-to-d")
    store.delete_actor("source", source.id)  # no longer used


# A store written by an older ferryman may hold names that are numbers: new ones are refused, so
# these tests rename rows in SQL to get them.


def _rename(store: SqlJobStore, table: sa.Table, row_id: int, name: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == row_id).values(name=name))


def _number_named_pair(store: SqlJobStore, kind: str) -> tuple[Actor, Actor]:
    """Two actors of ``kind``: ``wanted``, and a decoy named like ``wanted``'s id."""
    wanted = store.create_actor(kind, "wanted", "builtin:bench", {"which": "wanted"})
    decoy = store.create_actor(kind, "decoy", "builtin:bench", {"which": "decoy"})
    _rename(store, actors, decoy.id, str(wanted.id))
    return wanted, store.get_actor_by_id(kind, decoy.id)


def _connection(store: SqlJobStore, name: str) -> Connection:
    source = store.create_actor("source", f"{name}-s", "builtin:bench", {})
    dest = store.create_actor("destination", f"{name}-d", "builtin:devnull", {})
    return store.create_connection(name, source.id, dest.id, {"streams": []})


def test_a_sync_reads_from_its_own_source_not_one_named_like_its_id(store: SqlJobStore) -> None:
    wanted, _decoy = _number_named_pair(store, "source")
    dest = store.create_actor("destination", "d", "builtin:devnull", {})
    conn = store.create_connection("c", wanted.id, dest.id, {"streams": []})
    job = JobService(store).enqueue_replication(conn)
    taken = {key: job.config["source"][key] for key in ("actor_id", "connector", "config")}
    assert taken == {"actor_id": wanted.id, "connector": "builtin:bench", "config": wanted.config}


def test_deleting_an_actor_by_id_never_deletes_the_one_named_like_it(store: SqlJobStore) -> None:
    wanted, decoy = _number_named_pair(store, "destination")
    assert store.get_actor("destination", str(wanted.id)) == decoy  # a name wins over an id ...
    assert store.get_actor("destination", f"id:{wanted.id}") == wanted  # ... id:N is the id
    store.delete_actor("destination", wanted.id)
    assert store.list_actors("destination") == [decoy]


def test_state_and_delete_of_a_connection_act_on_it_not_on_one_named_like_its_id(store: SqlJobStore) -> None:
    wanted, decoy = _connection(store, "wanted"), _connection(store, "decoy")
    _rename(store, connections, decoy.id, str(wanted.id))
    state = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "u"}, "stream_state": {"n": 1}}}]
    JobService(store).set_state(store.get_connection("wanted"), state)
    assert (store.get_state(wanted.id), store.get_state(decoy.id)) == (state, [])
    store.delete_connection(wanted.id)
    assert [c.id for c in store.list_connections()] == [decoy.id]


def test_names_that_read_as_ids_are_refused_and_huge_numbers_are_no_id(store: SqlJobStore) -> None:
    source = store.create_actor("source", "s", "builtin:bench", {})
    for name in ("12", "id:3", "007", " "):
        with pytest.raises(UserInputError, match=r"named|needs a name"):
            store.create_actor("source", name, "builtin:bench", {})
        with pytest.raises(UserInputError, match=r"named|needs a name"):
            store.create_connection(name, source.id, source.id, {"streams": []})
    assert store.get_actor("source", str(source.id)) == source  # a bare number no name uses: the id
    for text in ("99999999999999999999999", "id:99999999999999999999999", "id:x", "\u00b2", "id:"):
        with pytest.raises(NotFound):
            store.get_actor("source", text)
        with pytest.raises(NotFound):
            store.get_connection(text)
    with pytest.raises(NotFound):
        store.get_job(10**23)
    assert store.list_attempts(10**23) == []
    with pytest.raises(NotFound):
        store.request_cancel(10**23)


def test_names_no_store_can_keep_alike_are_refused_with_one_line(store: SqlJobStore) -> None:
    # Postgres refused these with a DataError (a traceback, a 500); SQLite kept them.
    source = store.create_actor("source", "s", "builtin:bench", {})
    for name, reason in (
        ("n" * 256, "256 characters long"),
        ("a\x00b", "control character"),
        ("a\nb", "control"),
    ):
        with pytest.raises(UserInputError, match=reason):
            store.create_actor("source", name, "builtin:bench", {})
        with pytest.raises(UserInputError, match=reason):
            store.create_connection(name, source.id, source.id, {"streams": []})
        with pytest.raises(UserInputError, match=reason):
            store.create_application(name, "hash")
    longest = "é" * 255  # characters, not bytes
    assert store.create_actor("source", longest, "builtin:bench", {}).name == longest
    assert [a.name for a in store.list_actors("source")] == ["s", longest]


def test_a_nul_from_a_connector_never_breaks_a_write(store: SqlJobStore) -> None:
    """A connector's error message or config may hold a NUL; Postgres' JSONB cannot keep one, so
    there it is kept as U+FFFD (SQLite keeps it as is). Before, ending the attempt failed. A
    connection's state keeps it on both (test_store_state.py)."""
    job, attempt = running_sync(store)
    kept = "\x00" if store.dialect == "sqlite" else "\ufffd"
    state = [
        {"type": "STREAM", "stream": {"stream_descriptor": {"name": "u"}, "stream_state": {"c": "a\x00"}}}
    ]
    source = store.create_actor("source", "s", "builtin:bench", {"x": "\\u0000 stays text", "y": "\\\x00"})
    assert source.config == {"x": "\\u0000 stays text", "y": f"\\{kept}"}
    destination = store.create_actor("destination", "d", "builtin:destination-devnull", {})
    conn = store.create_connection("c", source.id, destination.id, {"streams": []})
    store.save_state(conn.id, state)
    assert store.get_state(conn.id)[0]["stream"]["stream_state"] == {"c": "a\x00"}
    store.fail_attempt(attempt, {"state": state}, failure("boom \x00 nul"), later(1))
    [ended] = store.list_attempts(job.id)
    assert ended.status is AttemptStatus.FAILED
    assert ended.failure_summary == failure(f"boom {kept} nul")
    # The attempt's output shows the state (masked), a copy never handed back to a source: JSONB.
    assert ended.output is not None
    assert ended.output["state"][0]["stream"]["stream_state"] == {"c": f"a{kept}"}

    # A text column (not JSON): Postgres cannot keep a NUL there at all. A prefix or namespace
    # format becomes part of table names: a control character is refused on every store, in one
    # line naming the field, and nothing is stored (SQLite stored it before).
    for field, label in (("prefix", "prefix"), ("namespace_format", "namespace format")):
        with pytest.raises(UserInputError, match=f"{label} 'a\\\\x00b' holds a control character"):
            store.create_connection("p", source.id, destination.id, {"streams": []}, **{field: "a\x00b"})
        with pytest.raises(UserInputError, match=f"{label} .* holds a control character"):
            store.update_connection(conn.id, **{field: "a\tb"})
    assert [(c.name, c.prefix, c.namespace_format) for c in store.list_connections()] == [("c", "", None)]


# -- jobs and attempts --------------------------------------------------------------------------


def test_enqueue_claim_succeed_round_trip(store: SqlJobStore) -> None:
    queued = store.enqueue(JobType.SYNC, "7", {"connection_id": 7})
    assert (queued.status, queued.started_at, queued.cancel_requested) == (JobStatus.PENDING, None, False)

    [(job, attempt)] = store.claim("engine-a", ALL_SLOTS, T0, log_path)
    assert (job.id, job.status, job.started_at) == (queued.id, JobStatus.RUNNING, T0)
    assert (attempt.number, attempt.status, attempt.engine_id) == (0, AttemptStatus.RUNNING, "engine-a")
    assert attempt.log_path == log_path(job.id, 0)
    assert _by_the_stores_clock(attempt.heartbeat_at)
    assert store.claim("engine-b", ALL_SLOTS, T0, log_path) == []  # nothing else to run

    store.set_attempt_pids(attempt.id, [4242])
    done = store.succeed_attempt(attempt, {"records": 3}, later(5))
    assert done.status is JobStatus.SUCCEEDED and done.config == {"connection_id": 7}
    [stored] = store.list_attempts(job.id)
    assert (stored.status, stored.output, stored.ended_at, stored.pids) == (
        AttemptStatus.SUCCEEDED,
        {"records": 3},
        later(5),
        [4242],
    )
    assert store.list_jobs(scope="7", status=JobStatus.SUCCEEDED) == [done]
    with pytest.raises(NotFound):
        store.get_job(done.id + 100)


def _by_the_stores_clock(stamp: datetime | None) -> bool:
    """A claim stamps the attempt's first heartbeat with the store's time (this machine's, for
    the stores under test), never the claimer's (T0, months off)."""
    return stamp is not None and abs(stamp - datetime.now(UTC)) < timedelta(minutes=10)


def test_a_job_queued_running_is_claimed_in_the_same_transaction(store: SqlJobStore) -> None:
    """What a command that runs its own job queues: never pending, so never a job nobody runs."""
    job, attempt = store.enqueue_running(JobType.SYNC, "7", {"connection_id": 7}, "engine-a", T0, log_path)
    assert (job.status, job.started_at, job.config) == (JobStatus.RUNNING, T0, {"connection_id": 7})
    assert (attempt.job_id, attempt.number, attempt.status) == (job.id, 0, AttemptStatus.RUNNING)
    assert attempt.engine_id == "engine-a" and _by_the_stores_clock(attempt.heartbeat_at)
    assert attempt.log_path == log_path(job.id, 0)
    assert store.claim("engine-b", ALL_SLOTS, T0, log_path) == []
    assert store.list_attempts(job.id) == [attempt]
    with pytest.raises(ConnectionBusy, match=rf"connection 7 .*job_id={job.id}, status=running"):
        store.enqueue_running(JobType.RESET, "7", {}, "engine-b", T0, log_path)
    assert [j.id for j in store.list_jobs(scope="7")] == [job.id]  # the refused one left nothing


def test_one_live_sync_or_reset_per_connection(store: SqlJobStore) -> None:
    first = store.enqueue(JobType.SYNC, "1", {})
    with pytest.raises(ConnectionBusy, match=rf"connection 1 .*job_id={first.id}, status=pending"):
        store.enqueue(JobType.SYNC, "1", {})
    with pytest.raises(ConnectionBusy):
        store.enqueue(JobType.RESET, "1", {})
    store.enqueue(JobType.SYNC, "2", {})  # another connection
    store.enqueue(JobType.CHECK_SOURCE, "1", {})  # not a replication job
    store.enqueue(JobType.CHECK_SOURCE, "1", {})

    store.request_cancel(first.id)  # terminal now: the connection is free again
    assert store.enqueue(JobType.RESET, "1", {}).status is JobStatus.PENDING


def test_the_database_itself_refuses_a_second_live_sync(store: SqlJobStore) -> None:
    store.enqueue(JobType.SYNC, "1", {})
    row = {
        "type": "reset_connection",
        "scope": "1",
        "config": {},
        "status": "incomplete",
        "created_at": T0,
        "updated_at": T0,
        "cancel_requested": False,
    }
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.insert(jobs).values(**row))
    with store.engine.begin() as conn:  # a finished one is history, not a live job
        conn.execute(sa.insert(jobs).values(**{**row, "status": "failed"}))


def test_racing_enqueues_on_one_connection_exactly_one_wins(store: SqlJobStore) -> None:
    barrier = threading.Barrier(6)
    won: list[int] = []
    busy: list[str] = []

    def race() -> None:
        barrier.wait()
        try:
            won.append(store.enqueue(JobType.SYNC, "9", {}).id)
        except ConnectionBusy as exc:
            busy.append(str(exc))

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(busy) == 5
    assert all(f"job_id={won[0]}" in message for message in busy)


def test_claim_honours_free_slots_oldest_first(store: SqlJobStore) -> None:
    specs = [store.enqueue(JobType.SPEC, None, {}).id for _ in range(3)]
    checks = [store.enqueue(t, None, {}).id for t in (JobType.CHECK_DESTINATION, JobType.CHECK_SOURCE)]
    syncs = [store.enqueue(JobType.SYNC, str(n), {}).id for n in range(2)]

    claimed = store.claim("e", {"spec": 2, "check": 1, "sync": 0}, T0, log_path)
    assert sorted(job.id for job, _ in claimed) == sorted([*specs[:2], checks[0]])
    assert store.claim("e", {"discover": 3}, T0, log_path) == []
    assert store.claim("e", {"sync": 1}, T0, log_path, only=[syncs[1]])[0][0].id == syncs[1]
    rest = store.claim("e", ALL_SLOTS, T0, log_path)
    assert sorted(job.id for job, _ in rest) == sorted([specs[2], checks[1], syncs[0]])
    assert store.get_job(specs[2]).status is JobStatus.RUNNING


# Each claimer opens the store before the start signal, then claims one job at a time, pausing
# briefly between claims as an engine's poll loop would, so that the claimers interleave.
CLAIMER_SETUP = """
from datetime import datetime
from ferryman.store import open_store
store = open_store(sys.argv[2])
now = datetime.fromisoformat(sys.argv[3])
store.list_jobs(limit=1)
"""
CLAIMER = """
got = []
while claimed := store.claim(f"engine-{sys.argv[1]}", {"spec": 1}, now, lambda job, n: f"/w/{job}/{n}"):
    got += [job.id for job, _ in claimed]
    time.sleep(0.003)
print(json.dumps(got))
"""


def test_concurrent_claimers_never_share_a_job(store: SqlJobStore, store_url: str, tmp_path: Path) -> None:
    queued = {store.enqueue(JobType.SPEC, None, {}).id for _ in range(20)}
    results = run_together(CLAIMER, [store_url, T0.isoformat()], 3, tmp_path, setup=CLAIMER_SETUP)
    claimed = [job_id for got in results for job_id in got]
    assert sorted(claimed) == sorted(queued)  # every job once: none lost, none twice
    assert {a.engine_id for job_id in queued for a in store.list_attempts(job_id)} <= {
        f"engine-{n}" for n in range(3)
    }
    assert all(len(store.list_attempts(job_id)) == 1 for job_id in queued)


def _backoff_over(store: SqlJobStore, job_id: int) -> None:
    """As if the job's backoff had passed by the store's clock: its due time moved to long ago."""
    with store.engine.begin() as conn:
        long_ago = datetime(2000, 1, 1, tzinfo=UTC)
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(next_attempt_at=long_ago))


def test_failed_attempts_retry_after_their_backoff(store: SqlJobStore) -> None:
    job, attempt = running_sync(store)
    for number in range(3):
        assert attempt.number == number
        start = later(100 * number)
        failed = store.fail_attempt(attempt, {"records": number}, failure(f"try {number}"), start)
        assert failed.status is JobStatus.INCOMPLETE
        assert store.claim("e", ALL_SLOTS, start, log_path) == []  # no retry decided yet
        before = store.now()
        retry_at = store.schedule_retry(job.id, 30).next_attempt_at
        assert retry_at is not None
        assert before + timedelta(seconds=30) <= retry_at <= store.now() + timedelta(seconds=30)
        assert store.claim("e", ALL_SLOTS, start, log_path) == []  # too early
        if number < 2:
            _backoff_over(store, job.id)
            job, attempt = claim_one(store, start)
    assert store.fail_job(job.id).status is JobStatus.FAILED
    history = store.list_attempts(job.id)
    assert [(a.number, a.status) for a in history] == [(n, AttemptStatus.FAILED) for n in range(3)]
    assert history[1].failure_summary == failure("try 1") and history[1].output == {"records": 1}
    assert store.enqueue(JobType.SYNC, "1", {}).status is JobStatus.PENDING  # connection free again


def test_a_retry_is_due_by_the_stores_clock_whatever_the_claimers_clock_says(store: SqlJobStore) -> None:
    """Engines on hosts whose clocks are off claim with their own ``now``: it stamps the attempt,
    and plays no part in whether the backoff is over. Before, ``next_attempt_at`` came from the
    failing engine's clock and was compared with the claimer's: a host minutes fast started a
    retry that much early, one minutes slow left it waiting."""
    job, attempt = running_sync(store)
    store.fail_attempt(attempt, None, failure(), T0)
    store.schedule_retry(job.id, 3600)
    far_ahead = store.now() + timedelta(days=1)
    assert store.claim("fast-host", ALL_SLOTS, far_ahead, log_path) == []
    store.schedule_retry(job.id, 0)  # due at once
    far_behind = store.now() - timedelta(days=1)
    (claimed, second) = claim_one(store, far_behind, engine="slow-host")
    assert (claimed.status, second.number, second.created_at) == (JobStatus.RUNNING, 1, far_behind)
    assert claimed.next_attempt_at is None
    # A Temporal workflow's timer has fired: the claim takes the job, whatever the store says.
    store.fail_attempt(second, None, failure(), T0)
    store.schedule_retry(job.id, 3600)
    assert store.claim("timer", ALL_SLOTS, T0, log_path, backoff_waited=True) == []  # only with ``only``
    [(_, third)] = store.claim("timer", ALL_SLOTS, T0, log_path, only=[job.id], backoff_waited=True)
    assert third.number == 2


def test_a_late_outcome_for_an_old_attempt_does_not_touch_the_retry(store: SqlJobStore) -> None:
    job, first = running_sync(store)
    store.fail_attempt(first, None, failure(), T0)
    store.schedule_retry(job.id, 0)
    _, second = claim_one(store, later(1))
    # The engine that ran the first attempt reports again (or another engine reaped it).
    assert store.fail_attempt(first, None, failure("again"), later(2)).status is JobStatus.RUNNING
    assert store.succeed_attempt(first, {}, later(2)).status is JobStatus.RUNNING
    assert store.list_attempts(job.id)[0].failure_summary == failure()
    assert store.succeed_attempt(second, {}, later(3)).status is JobStatus.SUCCEEDED


def test_an_outcome_returns_the_attempt_as_it_ended_and_none_when_it_came_late(store: SqlJobStore) -> None:
    job, attempt = running_sync(store)
    ended_job, ended = store.end_attempt(
        attempt, AttemptStatus.SUCCEEDED, JobStatus.SUCCEEDED, later(5), output={"ok": True}
    )
    assert ended_job.status is JobStatus.SUCCEEDED
    assert ended == store.list_attempts(job.id)[0]  # what a reader of the store sees
    assert ended is not None and ended.ended_at == later(5) and ended.output == {"ok": True}
    late = store.end_attempt(attempt, AttemptStatus.FAILED, JobStatus.INCOMPLETE, later(6))
    assert late == (ended_job, None)
    # A job that was failed while its attempt ran: the attempt ends, the job stays as it is.
    other, running = running_sync(store, scope="2")
    failed = store.fail_job(other.id)
    ended_job, ended = store.end_attempt(running, AttemptStatus.SUCCEEDED, JobStatus.SUCCEEDED, later(7))
    assert ended_job == failed and ended is not None and ended.status is AttemptStatus.SUCCEEDED


@pytest.mark.parametrize("attempts_done", [1, 3], ids=["retry", "no-retry-left"])
def test_a_retry_decided_on_an_overtaken_read_never_moves_the_newer_attempts_job(
    store: SqlJobStore, attempts_done: int
) -> None:
    """Two engines fail the same attempt (both found its engine gone, or the engine itself came
    back late): each decides the retry on the job it read as incomplete. If the other has claimed
    the retry meanwhile, the late decision must leave that running job alone. Before, it moved
    it back to incomplete (a third engine then ran the job twice at once) or failed it while its
    attempt ran."""
    job, first = running_sync(store)
    seen = store.fail_attempt(first, None, failure(), T0)
    assert seen.status is JobStatus.INCOMPLETE
    store.schedule_retry(job.id, 0)  # the first engine's decision
    _, second = claim_one(store, later(1), engine="engine-b")

    failures = [FailureReason.of(FailureOrigin.PLATFORM, FailureType.SYSTEM_ERROR, "gone", 0)]
    late = decide_retry(store, RetryPolicy(backoff_min_s=0), seen, attempts_done, failures, later(2))
    assert late.status is JobStatus.RUNNING
    assert store.claim("engine-c", ALL_SLOTS, later(3), log_path) == []  # not claimable twice
    assert store.succeed_attempt(second, {}, later(4)).status is JobStatus.SUCCEEDED


def test_claim_counts_the_attempts_a_job_had_across_slots(store: SqlJobStore) -> None:
    job, first = running_sync(store)
    spec = store.enqueue(JobType.SPEC, None, {})
    store.fail_attempt(first, None, failure(), T0)
    store.schedule_retry(job.id, 0)
    claimed = {j.id: a for j, a in store.claim("e", ALL_SLOTS, later(1), log_path)}
    assert (claimed[job.id].number, claimed[spec.id].number) == (1, 0)
    assert claimed[job.id].log_path == log_path(job.id, 1)


def test_no_call_fails_after_the_database_ended_every_session(store: SqlJobStore, store_url: str) -> None:
    """As after a restart of Postgres: each kind of call, the first after its pooled connections
    died, gets a new one and answers (connections are pinged on checkout only when in doubt)."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite has no server sessions")
    job = store.enqueue(JobType.SPEC, None, {})
    with store.engine.connect(), store.engine.connect():
        pass  # two connections in the pool
    calls = [
        lambda: store.get_job(job.id),  # a read
        lambda: store.heartbeat("e", [1]),  # a write of one statement
        lambda: store.claim("e", ALL_SLOTS, T0, log_path),  # a write transaction
    ]
    for call in calls:
        end_sessions(store_url)
        call()
    assert store.get_job(job.id).status is JobStatus.RUNNING


def test_writes_to_a_terminal_job_change_nothing(store: SqlJobStore) -> None:
    job, attempt = running_sync(store)
    done = store.succeed_attempt(attempt, {"ok": True}, later(1))
    assert store.fail_job(job.id) == done
    assert store.request_cancel(job.id) == done
    assert store.schedule_retry(job.id, 60) == done
    assert store.fail_attempt(attempt, None, failure(), later(2)) == done
    assert store.cancel_attempt(attempt, None, failure(), later(2)) == done
    assert store.list_attempts(job.id)[0].status is AttemptStatus.SUCCEEDED


def test_an_illegal_transition_raises_and_changes_nothing(store: SqlJobStore) -> None:
    pending = store.enqueue(JobType.SYNC, "1", {})
    with pytest.raises(IllegalTransition, match="pending"):
        store.schedule_retry(pending.id, 10)  # pending -> incomplete is not in the table
    assert store.get_job(pending.id) == pending


def test_request_cancel_in_each_state(store: SqlJobStore) -> None:
    pending = store.enqueue(JobType.SYNC, "1", {})
    assert store.request_cancel(pending.id).status is JobStatus.CANCELLED

    job, attempt = running_sync(store, "2")
    store.fail_attempt(attempt, None, failure(), T0)
    store.schedule_retry(job.id, 30)
    assert store.request_cancel(job.id).status is JobStatus.CANCELLED  # incomplete: at once
    assert store.claim("e", ALL_SLOTS, later(60), log_path) == []

    job, attempt = running_sync(store, "3")
    flagged = store.request_cancel(job.id)
    assert (flagged.status, flagged.cancel_requested) == (JobStatus.RUNNING, True)
    cancelled = store.cancel_attempt(
        attempt, {"records": 1}, failure("stop", "manual_cancellation"), later(5)
    )
    assert cancelled.status is JobStatus.CANCELLED
    assert store.list_attempts(job.id)[0].status is AttemptStatus.FAILED
    assert store.request_cancel(job.id) == cancelled  # terminal: unchanged

    job, attempt = running_sync(store, "4")
    store.request_cancel(job.id)  # the attempt fails before the engine notices the cancel
    store.fail_attempt(attempt, None, failure(), later(1))
    assert store.schedule_retry(job.id, 10).status is JobStatus.CANCELLED


def test_a_cancel_racing_a_claim_flags_the_running_job_and_never_ends_it_under_its_attempt(
    store: SqlJobStore, store_url: str
) -> None:
    """``jobs cancel`` reads the job pending while an engine's claim, not yet committed, starts
    it. Before, the cancel's write, retried on a fresh read, moved the now running job straight
    to cancelled: reported cancelled while its attempt ran on, and its connection free for a
    second sync beside it. Postgres only: SQLite runs one writer at a time, so cannot race."""
    if store.dialect != "postgresql":
        pytest.skip("SQLite serialises writers: the claim and the cancel cannot interleave")
    job = store.enqueue(JobType.SYNC, "1", {})
    claimer = sa.create_engine(store_url)
    database = store_url.rsplit("/", 1)[1]
    try:
        with claimer.connect() as conn:
            held = conn.begin()
            conn.execute(sa.text("UPDATE jobs SET status = 'running' WHERE id = :id"), {"id": job.id})
            done: list[object] = []
            cancel = threading.Thread(target=lambda: done.append(store.request_cancel(job.id)))
            cancel.start()
            waiting = sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND wait_event_type = 'Lock'"
            )
            with claimer.connect() as probe:
                while not probe.execute(waiting, {"db": database}).scalar():
                    assert cancel.is_alive(), done
                    probe.rollback()
            held.commit()  # the claim lands first; the cancel's write finds the job running
            cancel.join(timeout=30)
    finally:
        claimer.dispose()
    (answer,) = done
    after = store.get_job(job.id)
    assert (after.status, after.cancel_requested) == (JobStatus.RUNNING, True)
    assert answer == after
    assert store.cancel_requested([job.id]) == {job.id}  # its engine stops the attempt


def test_stale_attempts_are_those_whose_engine_went_quiet_by_the_stores_clock(store: SqlJobStore) -> None:
    """Heartbeats are stamped, and judged stale, by the store's clock: what the claiming
    engine's clock said (T0, months off this machine's) plays no part."""
    _, quiet = running_sync(store, "1")
    _, alive = running_sync(store, "2")
    assert store.stale_attempts(60) == []  # just claimed, whatever the claimer's clock said
    assert [a.id for a in store.running_attempts()] == [quiet.id, alive.id]
    with store.engine.begin() as conn:  # both quiet since long ago
        long_ago = datetime(2000, 1, 1, tzinfo=UTC)
        conn.execute(
            attempts.update().where(attempts.c.id.in_([quiet.id, alive.id])).values(heartbeat_at=long_ago)
        )
    assert store.heartbeat("engine-a", [alive.id]) == {alive.id}
    assert store.heartbeat("impostor", [quiet.id]) == set()  # only the owner's heartbeat counts
    assert [a.id for a in store.stale_attempts(60)] == [quiet.id]
    store.fail_attempt(quiet, None, failure(), later(61))
    assert store.stale_attempts(60) == []
    assert store.running_attempts() == store.list_attempts(alive.job_id)


def test_waiting_attempts_are_the_last_of_each_incomplete_job(store: SqlJobStore) -> None:
    job, first = running_sync(store, "1")
    store.fail_attempt(first, None, failure(), later(1))
    store.schedule_retry(job.id, 0)
    [(_, second)] = store.claim("engine-b", {"sync": 1}, later(2), lambda j, n: f"/logs/{j}/{n}")
    store.fail_attempt(second, None, failure(), later(3))
    running_sync(store, "2")  # running, not waiting
    assert [(a.job_id, a.number, a.engine_id) for a in store.waiting_attempts()] == [(job.id, 1, "engine-b")]

    failed = store.fail_waiting_job(job.id, later(4))
    assert failed is not None and failed.status is JobStatus.FAILED
    assert store.waiting_attempts() == []
    assert store.fail_waiting_job(job.id, later(5)) is None  # no longer incomplete: untouched


def test_stream_stats_are_upserted_per_stream(store: SqlJobStore) -> None:
    _, attempt = running_sync(store)
    store.save_stream_stats(
        attempt.id,
        [
            StreamStat(attempt.id, "users", None, 10, 100, None, None),
            StreamStat(attempt.id, "users", "hr", 1, 9, 1, 9),
        ],
    )
    store.save_stream_stats(attempt.id, [StreamStat(attempt.id, "users", None, 20, 200, 20, 200, 50, 500)])
    assert store.list_stream_stats(attempt.id) == [
        StreamStat(attempt.id, "users", None, 20, 200, 20, 200, 50, 500),
        StreamStat(attempt.id, "users", "hr", 1, 9, 1, 9),
    ]
    with pytest.raises(NotFound):
        store.save_stream_stats(attempt.id + 99, [StreamStat(attempt.id + 99, "x", None, 0, 0, 0, 0)])


def _cursor_state(cursor: int) -> list[dict[str, object]]:
    return [
        {"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"c": cursor}}}
    ]


def test_a_late_save_from_an_attempt_another_engine_failed_never_replaces_the_newer_state(
    store: SqlJobStore,
) -> None:
    """Engine A is cut off from the store past the stale limit; engine B fails A's attempt and
    runs the retry, which commits further. A comes back with its last confirmed state: the
    store refuses it (and its stats), and A's heartbeat tells it the attempt is gone. Before,
    A's save replaced the retry's state, so the next sync re-read what the retry had committed
    (or, with a state ahead of it, skipped records never delivered)."""
    source = store.create_actor("source", "s", "builtin:bench", {})
    dest = store.create_actor("destination", "d", "builtin:devnull", {})
    conn = store.create_connection("c", source.id, dest.id, {"streams": []})
    job = store.enqueue(JobType.SYNC, str(conn.id), {})
    _, first = claim_one(store, T0, engine="engine-a")
    stat = StreamStat(first.id, "users", None, 10, 100, 10, 100)
    assert store.save_progress(first.id, [stat], conn.id, _cursor_state(10), job.id)

    # Engine B: A went quiet, so its attempt is failed and the job retried by B.
    store.fail_attempt(first, None, failure("engine-a stopped heartbeating"), later(60))
    store.schedule_retry(job.id, 0)
    _, second = claim_one(store, later(61), engine="engine-b")
    assert store.save_progress(second.id, [], conn.id, _cursor_state(50), job.id)

    # Engine A comes back, still at cursor 20.
    late = StreamStat(first.id, "users", None, 20, 200, 20, 200)
    assert not store.save_progress(first.id, [late], conn.id, _cursor_state(20), job.id)
    assert not store.save_progress(first.id, [late])
    assert store.get_state(conn.id) == _cursor_state(50)
    assert store.list_stream_stats(first.id) == [stat]
    assert store.heartbeat("engine-a", [first.id]) == set()
    assert store.heartbeat("engine-b", [second.id]) == {second.id}
    assert store.heartbeat("engine-a", [second.id]) == set()  # not A's to renew
    with pytest.raises(NotFound):
        store.save_progress(second.id, [], conn.id + 5, _cursor_state(1))
    # The connection deleted while its sync runs: the state has nowhere to go, the counts are kept.
    counted = StreamStat(second.id, "users", None, 60, 600, 60, 600)
    with pytest.raises(NotFound, match="deleted"):
        store.save_progress(second.id, [counted], conn.id + 5, _cursor_state(60), job.id)
    assert store.list_stream_stats(second.id) == [counted]


def test_connection_state_is_saved_read_and_cleared(store: SqlJobStore) -> None:
    source = store.create_actor("source", "s", "builtin:bench", {})
    dest = store.create_actor("destination", "d", "builtin:devnull", {})
    conn = store.create_connection("c", source.id, dest.id, {"streams": []})
    assert store.get_state(conn.id) == []
    first = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"n": 1}}}]
    store.save_state(conn.id, first, job_id=1)
    assert store.get_state(conn.id) == first
    second = [{"type": "GLOBAL", "global": {"shared_state": {"lsn": 7}}}]
    store.save_state(conn.id, second)
    assert store.get_state(conn.id) == second
    store.clear_state(conn.id)
    assert store.get_state(conn.id) == []
    with pytest.raises(NotFound):
        store.save_state(conn.id + 5, first)


def test_a_state_edit_overtaken_by_a_sync_start_is_refused_not_lost(
    store: SqlJobStore, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ferryman connections state set` (and the API's) checks that no sync of the connection is
    live, reads the stored state (to restore masked secrets), then writes. A sync that another
    process starts in between reads the old state for its attempt and saves over the edit. Before,
    the edit was accepted all the same, and lost at the sync's first save; now the write is refused
    in its own transaction, saying why, and the state stays the one the sync started from."""
    conn = _connection(store, "c")
    store.save_state(conn.id, _cursor_state(10), job_id=1)
    service = JobService(store)
    other = open_store(store_url)  # the scheduler or an API server: another process
    started: list[object] = []
    shown = service.shown_state

    def a_sync_starts(c: Connection, state: list[dict[str, object]] | None = None) -> list[dict[str, object]]:
        if not started:  # between the edit's check and its write
            job = other.enqueue(JobType.SYNC, str(conn.id), {})
            claim_one(other)
            started.extend([job, other.get_state(conn.id)])  # what its attempt reads
        return shown(c, state)

    monkeypatch.setattr(service, "shown_state", a_sync_starts)
    try:
        with pytest.raises(
            UserInputError, match=r"'c' has a running job \(\d+\): cancel it or let it finish"
        ):
            service.set_state(conn, _cursor_state(99))
    finally:
        other.close()
    assert store.get_state(conn.id) == started[1] == _cursor_state(10)
    with pytest.raises(ConnectionBusy):  # forgetting it is refused the same way
        store.replace_state(conn.id, None, expected=_cursor_state(10))
    assert store.get_state(conn.id) == _cursor_state(10)


def test_a_state_edit_is_a_compare_and_set_on_the_state_it_was_made_from(store: SqlJobStore) -> None:
    conn = _connection(store, "c")
    store.save_state(conn.id, _cursor_state(10))
    assert not store.replace_state(conn.id, _cursor_state(99), expected=[])  # a stale read
    assert store.get_state(conn.id) == _cursor_state(10)
    assert store.replace_state(conn.id, _cursor_state(99), expected=_cursor_state(10))
    assert store.replace_state(conn.id, None, expected=_cursor_state(99))
    assert store.get_state(conn.id) == []
    with pytest.raises(NotFound):
        store.replace_state(conn.id + 5, None, expected=[])


def _a_session_waits_for_a_lock(store_url: str) -> bool:
    with psycopg.connect(store_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])


def test_a_sync_enqueued_during_a_state_edit_waits_for_it_and_reads_the_edited_state(
    store: SqlJobStore, store_url: str
) -> None:
    """The other order, on Postgres (READ COMMITTED): the edit has passed its check and is writing
    when another process enqueues a sync and starts it. The enqueue waits for the edit's commit,
    so the attempt reads the edited state. Before, the attempt read the old state while the edit
    was being written, and its first save put it back."""
    if store.dialect == "sqlite":
        pytest.skip("SQLite: a write transaction holds the whole file, so no enqueue starts inside one")
    conn = _connection(store, "c")
    store.save_state(conn.id, _cursor_state(10))
    other = open_store(store_url)
    read: list[list[dict[str, object]]] = []

    def a_sync_starts() -> None:
        other.enqueue(JobType.SYNC, str(conn.id), {})
        claim_one(other)
        read.append(other.get_state(conn.id))

    starter = threading.Thread(target=a_sync_starts)

    def while_writing(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("INSERT INTO connection_state") and not starter.ident:
            starter.start()
            while starter.is_alive() and not _a_session_waits_for_a_lock(store_url):
                starter.join(0.01)  # until the sync has started, or waits for this edit

    sa.event.listen(store.engine, "before_cursor_execute", while_writing)
    try:
        JobService(store).set_state(conn, _cursor_state(99))
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", while_writing)
        starter.join()
        other.close()
    assert read == [_cursor_state(99)]
    assert store.get_state(conn.id) == _cursor_state(99)


# -- opening the store --------------------------------------------------------------------------

OPENER = """
from ferryman.store import open_store
open_store(sys.argv[2]).close()
print(json.dumps("ok"))
"""


def test_several_processes_migrate_a_fresh_database_at_once(store_url: str, tmp_path: Path) -> None:
    assert run_together(OPENER, [store_url], 4, tmp_path, setup="import ferryman.store") == ["ok"] * 4
    with open_store(store_url) as store, store.engine.connect() as conn:
        versions = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
        assert versions == [head_revision()]
        assert store.list_jobs() == []


OTHER_PROCESS_WRITES = """
from ferryman.store import open_store
with open_store(sys.argv[2]) as store:
    store.create_actor("source", sys.argv[3], "builtin:source-bench", {})
    print(json.dumps(sorted(a.name for a in store.list_actors("source"))))
"""


def test_a_second_store_on_one_sqlite_file_in_a_process_keeps_every_commit(tmp_path: Path) -> None:
    """Two stores on one SQLite file in one process (a library user's, a test's): opening the
    second used to open and close the database file, and a close drops every POSIX lock of the
    process on that file, SQLite's too. Another process then took the first store's connections
    for gone and deleted the WAL under them: the first store's next commit went to a deleted file
    (other processes never saw it), and when it closed, its checkpoint overwrote their commits."""
    url = f"sqlite:///{tmp_path / 'db' / 'ferryman.db'}"

    def other_process_adds(name: str) -> list[str]:
        (tmp_path / name).mkdir()
        (names,) = run_together(OTHER_PROCESS_WRITES, [url, name], 1, tmp_path / name, setup="import json")
        return list(names)

    first = open_store(url)
    first.create_actor("source", "a", "builtin:source-bench", {})
    second = SqlJobStore.open(url, migrate_schema=False)
    assert other_process_adds("b") == ["a", "b"]
    first.create_actor("source", "c", "builtin:source-bench", {})
    # Before: ["a", "b", "d"], c unseen; and once the first store closed, d was gone.
    assert other_process_adds("d") == ["a", "b", "c", "d"]
    first.close()
    second.close()
    with open_store(url) as store:
        assert sorted(a.name for a in store.list_actors("source")) == ["a", "b", "c", "d"]


def test_urls_default_to_sqlite_in_home_and_bad_ones_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FERRYMAN_DATABASE_URL", raising=False)
    monkeypatch.setenv("FERRYMAN_HOME", str(tmp_path / "home"))
    assert database_url() == f"sqlite:///{tmp_path / 'home' / 'ferryman.db'}"
    with open_store() as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert (tmp_path / "home" / "ferryman.db").exists()
    monkeypatch.setenv("FERRYMAN_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert database_url() == "postgresql+psycopg://u@h/db"
    for bad in ("mysql://u:secret@h/db", "not a url", "postgresql+psycopg2://u@h/db"):
        with pytest.raises(UserInputError) as caught:
            open_store(bad)
        assert "\n" not in str(caught.value) and "secret" not in str(caught.value)


def test_the_first_engine_kind_recorded_stands_until_switched(store: SqlJobStore) -> None:
    # Two workers of different kinds starting at once on one store: the first write wins and both
    # learn which, so the other refuses to start.
    assert store.engine_kind() is None
    assert store.record_engine_kind("temporal") == "temporal"
    assert store.record_engine_kind("local") == "temporal"
    assert store.engine_kind() == "temporal"
    assert store.record_engine_kind("local", switch=True) == "local"
    assert store.record_engine_kind("temporal") == "local"


def test_cancel_requested_names_the_jobs_whose_cancel_was_asked(store: SqlJobStore) -> None:
    # An engine asks once per pass for every job it runs: the jobs `jobs cancel` flagged.
    first, second = (store.enqueue(JobType.SPEC, None, {"connector": "builtin:source-bench"}) for _ in "ab")
    store.claim("engine-1", {"spec": 2}, T0, log_path)
    store.request_cancel(second.id)
    assert store.cancel_requested([first.id, second.id, 10**30]) == {second.id}
    assert store.cancel_requested([]) == set()
