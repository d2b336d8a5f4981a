"""The notification outbox in the store, on SQLite and Postgres: which job ends write events, once,
and a claim that belongs to one dispatcher (fixtures in store_support.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ferryman.clock import OffsetClock
from ferryman.jobs.failures import FailureOrigin, FailureReason, FailureType
from ferryman.jobs.outcomes import FailureSummary
from ferryman.jobs.states import JobStatus, JobType
from ferryman.notifications import DeliveryPolicy, Dispatcher
from ferryman.store import NotFound, SqlJobStore
from ferryman.store.notify_ops import DELIVERED, PENDING
from tests.contract.store_support import (
    T0,
    claim_one,
    elapse,
    later,
    store,  # noqa: F401 - a fixture
    store_url,  # noqa: F401 - a fixture
)
from tests.receiver import receiving


def connection_id(store: SqlJobStore) -> int:  # noqa: F811
    source = store.create_actor("source", "src", "builtin:source-bench", {"count": 1})
    destination = store.create_actor("destination", "dst", "builtin:destination-devnull", {})
    return store.create_connection("c", source.id, destination.id, {"streams": []}).id


def failure(message: str) -> dict[str, Any]:
    reason = FailureReason.of(FailureOrigin.SOURCE, FailureType.SYSTEM_ERROR, message, 0)
    return FailureSummary(failures=[reason]).to_document()


def kinds(store: SqlJobStore) -> list[tuple[str, int | None]]:  # noqa: F811
    return sorted((e.kind, e.job_id) for e in store.list_events())


def test_only_the_end_of_a_sync_or_reset_is_told_and_only_once(store: SqlJobStore) -> None:  # noqa: F811
    scope = str(connection_id(store))
    store.add_webhook("http://127.0.0.1:9/all", "json", ["failure", "success", "cancelled"])
    store.add_webhook("http://127.0.0.1:9/failures", "slack", ["failure"])

    job = store.enqueue(JobType.SYNC, scope, {})
    _, attempt = claim_one(store)
    store.fail_attempt(attempt, None, failure("first try"), T0)  # incomplete: a retry follows
    assert store.list_events() == []
    store.schedule_retry(job.id, 0)
    _, attempt = claim_one(store, later(10))
    store.fail_attempt(attempt, None, failure("second try"), later(11))
    assert store.fail_job(job.id).status is JobStatus.FAILED
    assert kinds(store) == [("failure", job.id), ("failure", job.id)]
    store.fail_job(job.id)  # reported again: the job is terminal, nothing moves, nothing is written
    assert len(store.list_events()) == 2
    (event, _) = store.list_events()
    assert event.detail["failure"]["message"] == "second try" and event.detail["job"]["attempts"] == 2

    reset = store.enqueue(JobType.RESET, scope, {})
    store.request_cancel(reset.id)  # pending: cancelled at once
    store.enqueue(JobType.CHECK_SOURCE, "source:1", {})
    _, check = claim_one(store)
    store.succeed_attempt(check, {}, T0)  # not a sync: nobody is told
    sync = store.enqueue(JobType.SYNC, scope, {})
    _, attempt = claim_one(store)
    store.succeed_attempt(attempt, {}, T0)
    assert kinds(store) == [
        ("cancelled", reset.id),
        ("failure", job.id),
        ("failure", job.id),
        ("success", sync.id),
    ]


def test_a_webhook_of_one_connection_hears_only_of_it(store: SqlJobStore) -> None:  # noqa: F811
    mine = connection_id(store)
    other = store.create_connection(
        "other",
        store.get_actor("source", "src").id,
        store.get_actor("destination", "dst").id,
        {"streams": []},
    )
    store.add_webhook("http://127.0.0.1:9/mine", "json", ["disabled"], connection_id=mine)
    assert store.record_event("disabled", other.id, detail={"reason": "r"}) == 0
    assert store.record_event("disabled", mine, detail={"reason": "r"}) == 1
    store.delete_connection(mine)  # its webhooks go with it, once they have told what they owe
    assert store.list_webhooks() == []
    with pytest.raises(NotFound):
        store.add_webhook("http://127.0.0.1:9/x", "json", ["failure"], connection_id=mine)


def test_a_deleted_connection_s_webhook_still_tells_what_happened_before_then_goes(
    store: SqlJobStore,  # noqa: F811
) -> None:
    # Deleting a connection deleted its webhooks' undelivered events with them: a sync that failed
    # just before the deletion was never told to anyone listening to that connection.
    mine = connection_id(store)
    store.add_webhook("http://127.0.0.1:9/owes", "json", ["failure", "cancelled"], connection_id=mine)
    store.add_webhook("http://127.0.0.1:9/quiet", "json", ["success"], connection_id=mine)
    job = store.enqueue(JobType.SYNC, str(mine), {})
    _, attempt = claim_one(store)
    store.fail_attempt(attempt, None, failure("token expired"), T0)
    store.fail_job(job.id, later(1))
    store.delete_connection(mine)

    assert store.list_webhooks() == []  # neither is listed, nor hears of anything new
    ((event, hook),) = store.claim_events("a", lease_s=60, limit=5)
    assert (event.kind, event.job_id, hook.url) == ("failure", job.id, "http://127.0.0.1:9/owes")
    assert event.detail["failure"]["message"] == "token expired" and event.detail["connection"]["name"] == "c"
    assert store.list_events()[0].status == PENDING
    assert store.end_event_try(event.id, "a", later(3), DELIVERED, None, 200, None)
    assert store.list_events() == []  # told: the webhook is gone, with its events
    elapse(store, 3600)
    assert store.claim_events("a", lease_s=60, limit=5) == []


def test_a_claim_belongs_to_one_dispatcher_until_its_lease_runs_out(store: SqlJobStore) -> None:  # noqa: F811
    connection = connection_id(store)
    store.add_webhook("http://127.0.0.1:9/x", "json", ["disabled"])
    for _ in range(3):
        store.record_event("disabled", connection, now=T0)
    first = store.claim_events("a", lease_s=60, limit=2)
    assert [e.id for e, _ in first] == [1, 2]
    assert [e.id for e, _ in store.claim_events("b", lease_s=60, limit=5)] == [3]
    elapse(store, 50)
    assert store.claim_events("b", lease_s=60, limit=5) == []
    assert store.end_event_try(1, "a", later(1), DELIVERED, None, 200, None)
    elapse(store, 10)
    taken_over = store.claim_events("b", lease_s=60, limit=5)  # a died holding event 2
    assert [e.id for e, _ in taken_over] == [2, 3]
    assert not store.end_event_try(2, "a", later(61), DELIVERED, None, 200, None)  # a's claim is gone
    assert store.end_event_try(2, "b", later(61), PENDING, 30, None, "refused")
    statuses = {e.id: (e.status, e.tries) for e in store.list_events()}
    assert statuses == {1: (DELIVERED, 1), 2: (PENDING, 1), 3: (PENDING, 0)}
    elapse(store, 25)
    assert [e.id for e, _ in store.claim_events("a", lease_s=60, limit=5)] == []  # b's retry waits 30 s
    elapse(store, 5)
    assert [e.id for e, _ in store.claim_events("a", lease_s=60, limit=5)] == [2]


def test_no_hosts_clock_delays_a_notification_or_posts_it_twice(store: SqlJobStore) -> None:  # noqa: F811
    # Dispatchers and engines on several hosts share one store. Before, an event was due at the
    # time of the host that wrote it (a host 5 minutes fast: its failures told 5 minutes late by
    # the others), and a claim's lease ran by each dispatcher's own clock (one 5 minutes fast took
    # over a claim still being posted, and its receiver got the event twice).
    connection = connection_id(store)
    with receiving() as receiver:
        store.add_webhook(receiver.url(), "json", ["disabled"])
        ahead = datetime.now(UTC) + timedelta(minutes=5)
        store.record_event("disabled", connection, detail={"reason": "r"}, now=ahead)
        store.record_event("disabled", connection, detail={"reason": "r"}, now=ahead)
        slow = Dispatcher(store, "https://ferryman.example.com", DeliveryPolicy(batch=1), OffsetClock(-300))
        (told,) = slow.tick()  # at once, not in ten minutes
        assert told.status == DELIVERED
        ((held, _),) = store.claim_events("a", lease_s=60, limit=1)  # "a" is posting it
        fast = Dispatcher(store, "https://ferryman.example.com", DeliveryPolicy(), OffsetClock(300))
        assert fast.tick() == []
        assert store.end_event_try(held.id, "a", ahead, DELIVERED, None, 200, None)
    assert len(receiver.got) == 1
