"""Webhooks told of real jobs: syncs run by the local engine with real connectors, a real HTTP
receiver on a free port, time moved by a ManualClock (no sleeps), and Postgres shared by two
dispatchers. Each test reads what the receiver got, as the person on the other end would."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ferryman.clock import ManualClock
from ferryman.jobs.states import JobStatus
from ferryman.notifications import Delivery, DeliveryPolicy, Dispatcher
from ferryman.service import JobService
from ferryman.settings import Settings
from ferryman.store import SqlJobStore, open_store
from tests.contract.store_support import (
    elapse,
    store_url,  # noqa: F401 - a fixture: one database per test
)
from tests.integration.test_engine import bench_connection, scripted_connection, service_for
from tests.receiver import free_port, holding_open, receiving, trickling

SECRET = "sk-live-7Hq2ZxW9never-sent"
MASK = "**********"
PUBLIC = "https://ferryman.example.com"
DEADLINE_S = 60.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlJobStore]:
    opened = open_store(store_url_of(tmp_path))
    yield opened
    opened.close()


def store_url_of(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ferryman.db'}"


def clock_now() -> ManualClock:
    return ManualClock(datetime.now(UTC))


def dispatcher(store: SqlJobStore, clock: ManualClock, **policy: Any) -> Dispatcher:
    return Dispatcher(store, PUBLIC, DeliveryPolicy(**policy), clock)


def failing_connection(store: SqlJobStore, tmp_path: Path) -> JobService:
    """Connection ``s``, whose source reads one record, then fails with a config error whose
    message carries its API key (as careless connectors do)."""
    service = service_for(store, tmp_path)
    steps = [
        {"records": 1, "stream": "users"},
        {"state": {"name": "users"}},  # the record is committed
        {"trace_error": {"failure_type": "config_error", "message": f"login refused for key {SECRET}"}},
        {"exit": 1},
    ]
    scripted_connection(service, tmp_path, steps)
    source = store.get_actor("source", "s-src")
    store.update_actor_config(source.id, {"steps": steps, "api_key": SECRET})
    return service


def run_sync(service: JobService, name: str, expect: JobStatus) -> int:
    job = service.enqueue_replication(name)
    (ended,) = service._engine().run_jobs([job.id], timeout_s=DEADLINE_S)
    assert ended.status is expect
    return ended.id


def failing_sync(store: SqlJobStore, tmp_path: Path) -> int:
    return run_sync(failing_connection(store, tmp_path), "s", JobStatus.FAILED)  # config_error: no retry


def test_a_failed_sync_sends_one_failure_payload_in_each_format_with_no_secret(
    store: SqlJobStore, tmp_path: Path
) -> None:
    service = failing_connection(store, tmp_path)
    connection = store.get_connection("s")
    with receiving() as receiver:
        store.add_webhook(receiver.url("/slack"), "slack", ["failure"])  # every connection
        store.add_webhook(receiver.url("/json"), "json", ["failure"], connection_id=connection.id)
        job_id = run_sync(service, "s", JobStatus.FAILED)
        clock = clock_now()
        deliveries = dispatcher(store, clock).tick()

        assert sorted(d.status for d in deliveries) == ["delivered", "delivered"]
        assert dispatcher(store, clock).tick() == []  # nothing is sent twice
    (document,) = receiver.bodies("/json")
    committed = document["bytesCommitted"]
    (slack,) = receiver.bodies("/slack")
    assert slack == {
        "text": f"Sync of connection s failed (job {job_id}, 1 attempt): 1 record ({committed} B) "
        f"committed.\nsource config_error: login refused for key {MASK}\n{PUBLIC}/v1/jobs/{job_id}"
    }
    assert document["event"] == "failure"
    assert document["job"]["jobId"] == job_id and document["job"]["status"] == "failed"
    assert document["job"]["jobType"] == "sync" and document["job"]["url"] == f"{PUBLIC}/v1/jobs/{job_id}"
    assert document["job"]["attempts"] == 1
    assert document["job"]["startedAt"] <= document["job"]["endedAt"]
    assert document["connection"] == {"connectionId": connection.uuid, "id": connection.id, "name": "s"}
    assert document["recordsCommitted"] == 1 and 0 < committed < 1000
    assert document["failure"] == {
        "message": f"login refused for key {MASK}",
        "type": "config_error",
        "origin": "source",
        "stream": None,
    }
    assert SECRET not in str(receiver.got)


def test_success_is_sent_only_to_the_webhooks_that_opted_in(store: SqlJobStore, tmp_path: Path) -> None:
    service = service_for(store, tmp_path)
    bench_connection(service, "b", tmp_path, 250)
    connection = store.get_connection("b")
    with receiving() as receiver:
        store.add_webhook(receiver.url("/failures"), "json", ["failure"])  # the default kind
        store.add_webhook(receiver.url("/all"), "json", ["failure", "success"], connection_id=connection.id)
        job = service.enqueue_replication("b")
        (ended,) = service._engine().run_jobs([job.id], timeout_s=DEADLINE_S)
        assert ended.status is JobStatus.SUCCEEDED
        assert len(dispatcher(store, clock_now()).tick()) == 1

    (document,) = receiver.bodies("/all")
    assert receiver.bodies("/failures") == []
    assert document["event"] == "success" and document["job"]["status"] == "succeeded"
    assert document["recordsCommitted"] == 250 and document["failure"] is None


def test_a_receiver_that_is_down_gets_the_event_once_it_is_back(
    store: SqlJobStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there yet
    token_path = "/services/T000/B000/XXXXtokenXXXX"
    store.add_webhook(f"http://127.0.0.1:{port}{token_path}", "slack", ["failure"])
    job_id = failing_sync(store, tmp_path)
    clock = clock_now()
    sender = dispatcher(store, clock)
    caplog.set_level(logging.INFO, logger="ferryman.notifications")

    (refused,) = sender.tick()
    assert refused.status == "pending" and refused.status_code is None and refused.tries == 1
    elapse(store, 25)
    assert sender.tick() == []  # the backoff (30 s after the first try) has not passed
    with receiving(port) as receiver:
        elapse(store, 5)
        (delivered,) = sender.tick()
        assert delivered.status == "delivered" and delivered.status_code == 200 and delivered.tries == 2
        elapse(store, 3600)
        assert sender.tick() == []
    (body,) = receiver.bodies()
    assert f"/v1/jobs/{job_id}" in body["text"]
    (event,) = store.list_events()
    assert (event.status, event.tries, event.last_status_code) == ("delivered", 2, 200)
    logged = caplog.text
    assert "failed (try 1)" in logged and "delivered to http://127.0.0.1" in logged
    assert "token" not in logged  # the URL's path, which holds Slack's token, is never logged


def test_a_receiver_that_keeps_failing_is_given_up_after_the_last_try(
    store: SqlJobStore, tmp_path: Path
) -> None:
    with receiving() as receiver:
        receiver.answers += [503, 503, 503]
        store.add_webhook(receiver.url(), "json", ["failure"])
        failing_sync(store, tmp_path)
        clock = clock_now()
        sender = dispatcher(store, clock, max_tries=3, backoff_s=10)
        tried = []
        for step in (0, 10, 20, 3600):  # 10 s after the 1st try, 20 s after the 2nd, then nothing
            elapse(store, step)
            tried += [(d.status, d.status_code) for d in sender.tick()]
    assert tried == [("pending", 503), ("pending", 503), ("failed", 503)]
    (event,) = store.list_events()
    assert (event.status, event.tries, event.last_error) == ("failed", 3, "HTTP 503")


def plain_connection(store: SqlJobStore) -> int:
    source = store.create_actor("source", "src", "builtin:source-bench", {"count": 1})
    destination = store.create_actor("destination", "dst", "builtin:destination-devnull", {})
    return store.create_connection("c", source.id, destination.id, {"streams": []}).id


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_timeout_and_holds_up_no_one(
    store: SqlJobStore,
) -> None:
    # Each byte of its answer comes well within the timeout, the answer never: httpx's timeouts,
    # which bound each read, never fired, and the pass (every other webhook with it) waited.
    connection = plain_connection(store)
    with trickling() as slow_url, receiving() as receiver:
        store.add_webhook(slow_url, "json", ["disabled"])
        store.add_webhook(receiver.url("/prompt"), "json", ["disabled"])
        assert store.record_event("disabled", connection, detail={"reason": "test"}) == 2
        sender = dispatcher(store, clock_now(), timeout_s=1)
        passes: list[list[Delivery]] = []
        one_pass = threading.Thread(target=lambda: passes.append(sender.tick()), daemon=True)
        one_pass.start()
        one_pass.join(DEADLINE_S / 2)
        assert not one_pass.is_alive(), "a pass waited on a receiver trickling its answer"
    ((slow, prompt),) = passes
    assert (slow.status, slow.status_code, slow.error) == ("pending", None, "no answer within 1 s")
    assert (prompt.status, prompt.status_code) == ("delivered", 200)
    assert len(receiver.got) == 1


def test_a_webhook_url_that_cannot_be_read_fails_alone_and_others_are_posted_once(
    store: SqlJobStore, tmp_path: Path
) -> None:
    # A URL with a port that is not a number, stored before URLs were checked on the way in
    # (written here with SQL: the store refuses it now). It made every pass fail, the claims of
    # the events posted in it ran out, and their receivers got them again, and again.
    connection = plain_connection(store)
    with receiving() as receiver:
        typo = store.add_webhook("http://127.0.0.1:8080/hook", "json", ["disabled"])
        with sqlite3.connect(tmp_path / "ferryman.db") as db:
            db.execute("UPDATE webhooks SET url = 'http://127.0.0.1:80a/hook' WHERE id = ?", (typo.id,))
        store.add_webhook(receiver.url(), "json", ["disabled"])
        store.record_event("disabled", connection, detail={"reason": "test"})
        clock = clock_now()
        sender = dispatcher(store, clock)
        first = sender.tick()
        elapse(store, DeliveryPolicy().lease_s + 1)
        second = sender.tick()
    assert [(d.webhook, d.status) for d in first] == [
        ("http://(invalid URL)/...", "pending"),
        (f"http://127.0.0.1:{receiver.port}/...", "delivered"),
    ]
    assert [(d.webhook, d.tries) for d in second] == [("http://(invalid URL)/...", 2)]
    assert len(receiver.got) == 1


def test_a_disabled_connection_is_told_with_its_secrets_masked(store: SqlJobStore, tmp_path: Path) -> None:
    service = service_for(store, tmp_path)
    scripted_connection(service, tmp_path, [])
    source = store.get_actor("source", "s-src")
    store.update_actor_config(source.id, {"api_key": SECRET})
    connection = store.get_connection("s")
    with receiving() as receiver:
        store.add_webhook(receiver.url("/slack"), "slack", ["disabled"], connection_id=connection.id)
        store.add_webhook(receiver.url("/json"), "json", ["disabled"])
        store.add_webhook(receiver.url("/failures-only"), "json", ["failure"])
        # What the scheduler does after too many failures (its reason quoting a failure message).
        written = store.record_event(
            "disabled", connection.id, detail={"reason": f"100 failed jobs in a row (last: bad key {SECRET})"}
        )
        assert written == 2
        assert len(dispatcher(store, clock_now()).tick()) == 2
    (text,) = receiver.bodies("/slack")
    assert text == {
        "text": f"Connection s was disabled: 100 failed jobs in a row (last: bad key {MASK}). "
        "It runs again once it is set active."
    }
    (document,) = receiver.bodies("/json")
    assert document["event"] == "disabled" and document["connection"]["connectionId"] == connection.uuid
    assert document["reason"] == f"100 failed jobs in a row (last: bad key {MASK})"
    assert "job" not in document
    assert SECRET not in str(receiver.got)


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)  # SQLite has one writer at a time
def test_two_dispatchers_on_one_postgres_deliver_each_event_exactly_once(store_url: str) -> None:  # noqa: F811
    stores = [open_store(store_url), open_store(store_url)]
    try:
        first = stores[0]
        source = first.create_actor("source", "src", "builtin:source-bench", {"count": 1})
        destination = first.create_actor("destination", "dst", "builtin:destination-devnull", {})
        connection = first.create_connection("c", source.id, destination.id, {"streams": []})
        with receiving() as receiver:
            first.add_webhook(receiver.url(), "json", ["disabled"])
            total = 120
            for number in range(total):
                first.record_event("disabled", connection.id, detail={"reason": f"event {number}"})
            clock = clock_now()
            senders = [dispatcher(s, clock, batch=4) for s in stores]
            done = threading.Event()

            def drain(sender: Dispatcher) -> None:
                while not done.is_set():
                    if not sender.tick() and len(receiver.bodies()) >= total:
                        done.set()

            threads = [threading.Thread(target=drain, args=(s,)) for s in senders]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(DEADLINE_S)
            done.set()
            counts = Counter(body["eventId"] for body in receiver.bodies())
        assert len(counts) == total and set(counts.values()) == {1}
        by = Counter(e.claimed_by for e in first.list_events(limit=total))
        assert len(by) == 2, f"both dispatchers should have taken part: {by}"  # the race was run
        assert {e.status for e in first.list_events(limit=total)} == {"delivered"}
    finally:
        for opened in stores:
            opened.close()


def test_a_job_ended_by_a_worker_process_is_notified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FERRYMAN_HOME", str(home))
    monkeypatch.delenv("FERRYMAN_DATABASE_URL", raising=False)
    store = open_store(home=home)
    try:
        queue_only = JobService(store, Settings(home=home))  # as `connections sync --detach` does
        bench_connection(service_for(store, home), "w", home, 10)
        store.update_actor_config(store.get_actor("source", "w-src").id, {"count": "many"})  # a bad config
        with receiving() as receiver:
            store.add_webhook(receiver.url(), "json", ["failure"])
            job = queue_only.enqueue_replication("w")
            worker = subprocess.Popen(
                [sys.executable, "-m", "ferryman", "worker"],
                env={**os.environ, "FERRYMAN_HOME": str(home), "SYNC_JOB_MAX_ATTEMPTS": "1"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                deadline = time.monotonic() + DEADLINE_S
                while not store.get_job(job.id).status.terminal:
                    assert time.monotonic() < deadline and worker.poll() is None, "the worker never ended it"
                    time.sleep(0.05)
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.communicate(timeout=DEADLINE_S)
            assert store.get_job(job.id).status is JobStatus.FAILED
            assert len(dispatcher(store, clock_now()).tick()) == 1  # this process posts it
        (document,) = receiver.bodies()
        assert document["job"]["jobId"] == job.id and document["event"] == "failure"
        assert document["failure"]["message"]
    finally:
        store.close()


def test_text_from_names_and_failures_cannot_ping_a_channel_or_disguise_a_link(
    store: SqlJobStore, tmp_path: Path
) -> None:
    # A connection named, and a connector failing, with Slack's control sequences in the text: sent
    # raw, the channel was pinged (<!channel>, @here for Mattermost and Discord) and a link read
    # "the docs" while it led elsewhere. Ferryman's own job link still works.
    service = service_for(store, tmp_path)
    message = "<!channel> quota hit, see <http://evil.example/x|the docs> & retry @here"
    steps = [{"trace_error": {"failure_type": "config_error", "message": message}}, {"exit": 1}]
    scripted_connection(service, tmp_path, steps)
    connection = store.get_connection("s")
    store.update_connection(connection.id, name="<@U123> pg>duck")
    with receiving() as receiver:
        store.add_webhook(receiver.url("/slack"), "slack", ["failure"])
        store.add_webhook(receiver.url("/json"), "json", ["failure"])
        job_id = run_sync(service, "<@U123> pg>duck", JobStatus.FAILED)
        assert len(dispatcher(store, clock_now()).tick()) == 2
    (slack,) = receiver.bodies("/slack")
    head, reason, link = slack["text"].split("\n")
    assert head.startswith("Sync of connection &lt;@\u200bU123&gt; pg&gt;duck failed (job ")
    assert reason == (
        "source config_error: &lt;!channel&gt; quota hit, see &lt;http://evil.example/x|the docs&gt; "
        "&amp; retry @\u200bhere"
    )
    assert link == f"{PUBLIC}/v1/jobs/{job_id}"
    (document,) = receiver.bodies("/json")  # a program gets the text as it was
    assert document["connection"]["name"] == "<@U123> pg>duck"
    assert document["failure"]["message"] == message


def test_a_sync_that_failed_just_before_its_connection_was_deleted_is_still_told(
    store: SqlJobStore, tmp_path: Path
) -> None:
    # The connection's own webhook went with the connection, and its undelivered events with it:
    # the person watching that connection never heard of the failure.
    service = failing_connection(store, tmp_path)
    connection = store.get_connection("s")
    with receiving() as receiver:
        store.add_webhook(receiver.url("/mine"), "slack", ["failure"], connection_id=connection.id)
        job_id = run_sync(service, "s", JobStatus.FAILED)
        hook = store.list_webhooks()[0]
        store.delete_connection(connection.id)  # before any dispatcher posted the failure
        assert store.list_webhooks() == []
        # What the CLI shows of the event still owed names the webhook that will deliver it (it
        # showed "webhook": null once the webhook was retired with its connection).
        env = {**os.environ, "FERRYMAN_HOME": str(tmp_path), "FERRYMAN_DATABASE_URL": store_url_of(tmp_path)}
        shown = subprocess.run(
            [sys.executable, "-m", "ferryman", "notifications", "events", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        (owed,) = json.loads(shown.stdout)
        assert (owed["webhook"], owed["status"], owed["job_id"]) == (hook.uuid, "pending", job_id)
        clock = clock_now()
        (told,) = dispatcher(store, clock).tick()
        assert told.status == "delivered"
        elapse(store, 3600)
        assert dispatcher(store, clock).tick() == []
    (slack,) = receiver.bodies("/mine")
    assert slack["text"].startswith(f"Sync of connection s failed (job {job_id}, 1 attempt)")
    assert f"login refused for key {MASK}" in slack["text"] and SECRET not in slack["text"]


def test_a_redirect_to_another_host_is_not_followed_and_says_where_it_points_without_its_token(
    store: SqlJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Given up at once as before, but the line read only "HTTP 308": the owner could not tell the
    # webhook had moved, nor where to. Following it would post the event to a host nobody set.
    connection = plain_connection(store)
    caplog.set_level(logging.INFO, logger="ferryman.notifications")
    with receiving() as moved, receiving() as elsewhere:
        moved.answers.append(308)
        moved.location = f"http://localhost:{elsewhere.port}/services/T0/B0/NEWtokenSEKRIT"
        store.add_webhook(moved.url("/services/T0/B0/OLDtokenSEKRIT"), "json", ["disabled"])
        store.record_event("disabled", connection, detail={"reason": "test"})
        clock = clock_now()
        (tried,) = dispatcher(store, clock).tick()
        elapse(store, 3600)
        assert dispatcher(store, clock).tick() == []
    assert len(moved.got) == 1 and elsewhere.got == []
    expected = (
        f"HTTP 308: redirected to http://localhost:{elsewhere.port}/..., which is not followed; "
        "set the webhook's new URL"
    )
    assert (tried.status, tried.status_code, tried.error) == ("failed", 308, expected)
    (event,) = store.list_events()
    assert (event.status, event.last_error) == ("failed", expected)
    assert expected in caplog.text and "SEKRIT" not in caplog.text


def test_a_receiver_that_answers_and_never_closes_the_connection_holds_nothing_up(
    store: SqlJobStore,
) -> None:
    # Its status line and headers come at once, then a body that never ends: the status is all a
    # try needs, so it is delivered at once, well before the timeout would cut it off.
    connection = plain_connection(store)
    with holding_open() as url:
        store.add_webhook(url, "json", ["disabled"])
        store.record_event("disabled", connection, detail={"reason": "test"})
        (tried,) = dispatcher(store, clock_now(), timeout_s=DEADLINE_S).tick()
    assert (tried.status, tried.status_code, tried.error) == ("delivered", 200, None)
