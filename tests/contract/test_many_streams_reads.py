"""A connection of thousands of streams (a database of many tables) has a catalog of megabytes
and thousands of stream stats per attempt. Putting a name on a job, or its totals in a row of a
list, must read neither (docs/performance.md, "Session 25"): on SQLite and Postgres alike."""

from __future__ import annotations

from typing import Any

import pytest

from ferryman.api.documents import Lookups, job_doc
from ferryman.errors import StoreError
from ferryman.jobs.states import JobType
from ferryman.service import JobService
from ferryman.store import SqlJobStore, StreamStat
from ferryman.store.base import Connection, JobQuery
from ferryman.views import job_doc as cli_job_doc
from ferryman.web.pages import figures
from tests.contract.store_support import T0, claim_one, failure, later, store, store_url

__all__ = ["store", "store_url"]  # fixtures, imported for pytest

STREAMS = 300


class ReadCounting:
    """The store, counting the rows of the reads that grow with a connection's streams."""

    def __init__(self, real: SqlJobStore) -> None:
        self.real = real
        self.stat_rows = self.catalogs = self.attempt_rows = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def list_stream_stats(self, attempt_id: int) -> list[StreamStat]:
        found = self.real.list_stream_stats(attempt_id)
        self.stat_rows += len(found)
        return found

    def list_connections(self) -> Any:
        found = self.real.list_connections()
        self.catalogs += len(found)
        return found

    def get_connection_by_id(self, connection_id: int, *args: Any, **kwargs: Any) -> Any:
        found: Connection = self.real.get_connection_by_id(connection_id, *args, **kwargs)
        self.catalogs += isinstance(found.catalog, dict)  # not left unread (UnreadCatalog)
        return found

    def list_attempts(self, job_id: int) -> Any:
        found = self.real.list_attempts(job_id)
        self.attempt_rows += len(found)
        return found


def _sync_of_many_streams(store: SqlJobStore) -> tuple[Any, Any]:
    source = store.create_actor("source", "db", "builtin:source-bench", {"count": 1})
    destination = store.create_actor("destination", "out", "builtin:destination-devnull", {})
    catalog = {
        "streams": [
            {
                "stream": {"name": f"table_{n}", "json_schema": {"type": "object"}},
                "sync_mode": "full_refresh",
                "destination_sync_mode": "append",
            }
            for n in range(STREAMS)
        ]
    }
    conn = store.create_connection("many", source.id, destination.id, catalog)
    store.enqueue(JobType.SYNC, str(conn.id), {"connection_id": str(conn.id)})
    job, first = claim_one(store, T0)
    # The first attempt committed only what it confirmed (none of some streams), the second all.
    odd = [n % 2 or None for n in range(STREAMS)]  # committed: 1 (odd streams) or unknown
    store.save_stream_stats(
        first.id,
        [StreamStat(first.id, f"table_{n}", None, 2, 20, one, one and 10) for n, one in enumerate(odd)],
    )
    store.fail_attempt(first, None, failure(), later(1))
    store.schedule_retry(job.id, 0)
    job, second = claim_one(store, later(2))
    store.save_stream_stats(
        second.id, [StreamStat(second.id, f"table_{n}", "public", 3, 30, 3, 30) for n in range(STREAMS)]
    )
    return conn, store.succeed_attempt(second, {}, later(3))


def test_a_jobs_totals_are_added_up_by_the_store_as_its_stats_add_up(store: SqlJobStore) -> None:
    _, job = _sync_of_many_streams(store)
    stats = [s for a in store.list_attempts(job.id) for s in store.list_stream_stats(a.id)]
    totals = store.job_totals(job.id)
    assert totals.attempts == 2
    assert totals.records_committed == sum(s.records_committed or 0 for s in stats) == 150 + 3 * STREAMS
    assert totals.bytes_committed == sum(s.bytes_committed or 0 for s in stats)
    assert totals.records == 150 * 1 + 150 * 2 + 3 * STREAMS  # emitted where nothing is known
    assert totals.bytes == 150 * 10 + 150 * 20 + 30 * STREAMS
    assert store.job_totals(job.id + 1).attempts == 0
    assert store.job_totals(2**70).records == 0


def test_a_job_is_named_and_totalled_without_reading_catalogs_or_stream_stats(store: SqlJobStore) -> None:
    conn, job = _sync_of_many_streams(store)
    counting = ReadCounting(store)

    document = job_doc(job, Lookups(counting))  # type: ignore[arg-type]  # GET /v1/jobs/{id}
    assert (document["connectionId"], document["rowsSynced"]) == (conn.uuid, 150 + 3 * STREAMS)
    row = figures(JobService(counting), job)  # type: ignore[arg-type]  # the web UI's lists of jobs
    assert (row.records, row.attempts) == (150 + 150 * 2 + 3 * STREAMS, 2)
    names = JobService(counting).names()  # type: ignore[arg-type]  # `ferryman jobs list` and `show`
    assert cli_job_doc(job, names, 2)["label"] == "many"

    assert (counting.catalogs, counting.stat_rows, counting.attempt_rows) == (0, 0, 0)


def test_a_list_of_syncs_leaves_their_configs_unread_and_a_spec_job_is_still_named(
    store: SqlJobStore,
) -> None:
    """A sync's config holds its catalog (megabytes for thousands of streams) and no list shows
    it: a page of jobs reads it for the other jobs only; a sync's raises if anything reads it."""
    conn, sync = _sync_of_many_streams(store)
    spec = store.enqueue(JobType.SPEC, None, {"connector": "builtin:source-bench"})
    page = store.page_jobs(JobQuery(order_by="id", descending=True))
    assert [job.id for job in page] == [spec.id, sync.id]
    names = JobService(store).names()
    assert [cli_job_doc(job, names, 0)["label"] for job in page] == ["builtin:source-bench", "many"]
    assert page[0].config == spec.config
    with pytest.raises(StoreError, match="get_job"):
        page[1].config.get("catalog")
    assert store.get_job(sync.id).config == {"connection_id": str(conn.id)}
