"""What notifications cost: the end of a job with and without webhooks, and events posted per second.

    python benchmarks/notifications.py [--jobs 500] [--events 1000]
                                       [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/DB]

On a fresh store (SQLite in a temporary directory, or the Postgres database given, which must be
empty):

  * job end: ``--jobs`` sync jobs claimed and succeeded, with no webhook, then with two that want
    successes; the mean time of ``succeed_attempt`` (the transaction that ends the job and, with
    webhooks, writes its events);
  * delivery: ``--events`` events posted by one dispatcher to a local http.server receiver; events
    per second from the first claim to the last recorded outcome.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository, for tests.receiver

from tests.receiver import receiving

from ferryman.jobs.states import JobType
from ferryman.notifications import DeliveryPolicy, Dispatcher
from ferryman.store import SqlJobStore, open_store

SLOTS = {"sync": 1}


def end_jobs(store: SqlJobStore, scope: str, jobs: int) -> float:
    """Mean seconds of the transaction that ends a job."""
    spent = 0.0
    for _ in range(jobs):
        store.enqueue(JobType.SYNC, scope, {})
        ((_, attempt),) = store.claim("bench", SLOTS, datetime.now(UTC), lambda j, n: f"/tmp/{j}/{n}")
        start = time.perf_counter()
        store.succeed_attempt(attempt, {}, datetime.now(UTC))
        spent += time.perf_counter() - start
    return spent / jobs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(args.database_url or f"sqlite:///{tmp}/ferryman.db")
        source = store.create_actor("source", "src", "builtin:source-bench", {"count": 1})
        destination = store.create_actor("destination", "dst", "builtin:destination-devnull", {})
        connection = store.create_connection("c", source.id, destination.id, {"streams": []})
        print(f"store: {store.dialect}")
        bare = end_jobs(store, str(connection.id), args.jobs)
        with receiving() as receiver:
            store.add_webhook(receiver.url("/a"), "json", ["success"])
            store.add_webhook(receiver.url("/b"), "slack", ["success"], connection_id=connection.id)
            told = end_jobs(store, str(connection.id), args.jobs)
            print(f"job end, no webhook:   {bare * 1000:.2f} ms")
            print(f"job end, two webhooks: {told * 1000:.2f} ms (+{(told - bare) * 1000:.2f} ms)")
            for number in range(args.events - 2 * args.jobs):
                store.record_event("success", connection.id, detail={"reason": f"bench {number}"})
            dispatcher = Dispatcher(store, "http://127.0.0.1:8000", DeliveryPolicy(batch=20))
            start = time.perf_counter()
            sent = 0
            while True:
                done = dispatcher.tick()
                if not done:
                    break
                sent += len(done)
            elapsed = time.perf_counter() - start
            dispatcher.close()
            print(f"delivery: {sent} events in {elapsed:.2f} s = {sent / elapsed:.0f} events/s")
        store.close()


if __name__ == "__main__":
    main()
