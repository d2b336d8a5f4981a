"""The store's tallies as Prometheus families (api/metric_families.py), from plain values: what a
scrape says, parsed back with prometheus_client's own parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ferryman.api.metric_families import job_families, lag_families, pending_families, store_families
from ferryman.store.tallies import (
    DURATION_BUCKETS_S,
    LAG_BUCKETS_S,
    DurationTally,
    Histogram,
    JobCount,
    LagTally,
    StreamTotals,
    Tallies,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def scrape(families: list[Metric]) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The exposition text of ``families``, parsed: sample name -> sorted labels -> value."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed(families))
    text = generate_latest(registry).decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def lag(cumulative: tuple[int, ...], count: int, sum_s: float, last_s: float | None) -> LagTally:
    return LagTally(Histogram(LAG_BUCKETS_S, cumulative, count, sum_s), last_s)


def test_no_scheduler_lag_family_without_the_column() -> None:
    assert lag_families(None) == []


def test_scheduler_lag_histogram_and_last_lag() -> None:
    samples = scrape(lag_families(lag((1, 2, 3, 3, 4, 4, 4, 5), 6, 4049.5, 7.0)))
    buckets = samples["ferryman_scheduler_lag_seconds_bucket"]
    assert buckets[(("le", "1.0"),)] == 1
    assert buckets[(("le", "30.0"),)] == 3
    assert buckets[(("le", "3600.0"),)] == 5
    assert buckets[(("le", "+Inf"),)] == 6  # one lag beyond the last bound
    assert samples["ferryman_scheduler_lag_seconds_count"][()] == 6
    assert samples["ferryman_scheduler_lag_seconds_sum"][()] == 4049.5
    assert samples["ferryman_scheduler_last_lag_seconds"][()] == 7.0


def test_scheduler_lag_before_any_scheduled_job() -> None:
    samples = scrape(lag_families(lag((0,) * 8, 0, 0.0, None)))
    assert samples["ferryman_scheduler_lag_seconds_count"][()] == 0
    assert "ferryman_scheduler_last_lag_seconds" not in samples  # no job yet: no last lag


def test_every_type_and_status_is_there_zero_or_not() -> None:
    counts = [JobCount("sync", "running", 2), JobCount("reset_connection", "running", 1)]
    counts += [
        JobCount("spec", "succeeded", 4),
        JobCount("spec", "failed", 1),
        JobCount("spec", "pending", 3),
    ]
    samples = scrape(list(job_families(counts, {"sync": 5, "spec": 2})))
    assert len(samples["ferryman_jobs"]) == 6 * 6
    assert samples["ferryman_jobs"][(("status", "succeeded"), ("type", "spec"))] == 4
    assert samples["ferryman_jobs"][(("status", "cancelled"), ("type", "sync"))] == 0
    assert samples["ferryman_jobs_created_total"][(("type", "spec"),)] == 8
    assert samples["ferryman_jobs_ended_total"][(("status", "failed"), ("type", "spec"))] == 1
    assert len(samples["ferryman_jobs_ended_total"]) == 6 * 3  # terminal statuses only
    running = samples["ferryman_running_jobs"]
    assert running == {
        (("slot", "sync"),): 3,
        (("slot", "spec"),): 0,
        (("slot", "check"),): 0,
        (("slot", "discover"),): 0,
    }
    assert samples["ferryman_running_jobs_limit"] == {(("slot", "spec"),): 2, (("slot", "sync"),): 5}


def test_no_limit_without_an_engine_in_the_server() -> None:
    assert "ferryman_running_jobs_limit" not in scrape(list(job_families([], {})))


def test_pending_jobs_and_the_age_of_the_oldest() -> None:
    counts = [JobCount("sync", "pending", 4), JobCount("spec", "succeeded", 1)]
    oldest = {"sync": NOW - timedelta(minutes=90)}
    samples = scrape(list(pending_families(counts, oldest, NOW)))
    assert samples["ferryman_pending_jobs"][(("type", "sync"),)] == 4
    assert samples["ferryman_pending_jobs"][(("type", "spec"),)] == 0
    assert samples["ferryman_oldest_pending_job_age_seconds"] == {(("type", "sync"),): 5400.0}


def test_a_whole_scrape_from_tallies() -> None:
    durations = [
        DurationTally("sync", "failed", Histogram(DURATION_BUCKETS_S, (0, 0, 1, 1, 1, 1, 2, 2), 2, 1210.0))
    ]
    streams = [StreamTotals("sync", 120, 5000, 100, 4000)]
    tallies = Tallies([JobCount("sync", "failed", 1)], {}, durations, streams, None, NOW)
    samples = scrape(list(store_families(tallies, {}, NOW)))
    key = (("le", "900.0"), ("status", "failed"), ("type", "sync"))
    assert samples["ferryman_attempt_duration_seconds_bucket"][key] == 1
    assert samples["ferryman_attempt_duration_seconds_count"][(("status", "failed"), ("type", "sync"))] == 2
    assert samples["ferryman_records_committed_total"] == {(("type", "sync"),): 100}
    assert samples["ferryman_bytes_committed_total"] == {(("type", "sync"),): 4000}
    assert samples["ferryman_records_emitted_total"] == {(("type", "sync"),): 120}
    assert not any(name.startswith("ferryman_scheduler") for name in samples)
