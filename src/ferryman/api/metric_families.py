"""The store's tallies as Prometheus metric families (docs/metrics.md describes each).

Pure functions of what the store's aggregate queries returned: no query here, so every family is
tested with plain values. Labels are job types, job and attempt statuses and worker slots only,
never a name, a config value or an id: nothing a user typed reaches the exposition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ferryman.jobs.states import JobStatus, JobType
from ferryman.store.tallies import DurationTally, Histogram, JobCount, LagTally, StreamTotals, Tallies

PREFIX = "ferryman"
TERMINAL = [status.value for status in JobStatus if status.terminal]


def store_families(tallies: Tallies, limits: Mapping[str, int], now: datetime) -> Iterator[Metric]:
    """Every family computed from the store, in the order docs/metrics.md lists them."""
    yield from job_families(tallies.jobs, limits)
    yield from pending_families(tallies.jobs, tallies.oldest_pending, now)
    yield duration_family(tallies.durations)
    yield from stream_families(tallies.streams)
    yield from lag_families(tallies.lag)


def _types(counts: Iterable[JobCount]) -> list[str]:
    """Every job type, and any other the store holds (written by a newer ferryman)."""
    known = [job_type.value for job_type in JobType]
    return known + sorted({count.type for count in counts} - set(known))


def job_families(counts: list[JobCount], limits: Mapping[str, int]) -> Iterator[Metric]:
    by_key = {(count.type, count.status): count.count for count in counts}
    types = _types(counts)
    statuses = [status.value for status in JobStatus]
    now_in = GaugeMetricFamily(
        f"{PREFIX}_jobs", "Jobs in the store by type and current status.", labels=["type", "status"]
    )
    created = CounterMetricFamily(
        f"{PREFIX}_jobs_created",
        "Jobs created, by type (every job row, whatever its status).",
        labels=["type"],
    )
    ended = CounterMetricFamily(
        f"{PREFIX}_jobs_ended",
        "Jobs that ended, by type and terminal status (succeeded, failed, cancelled).",
        labels=["type", "status"],
    )
    for job_type in types:
        created.add_metric([job_type], sum(n for (t, _), n in by_key.items() if t == job_type))
        for status in statuses:
            now_in.add_metric([job_type, status], by_key.get((job_type, status), 0))
        for status in TERMINAL:
            ended.add_metric([job_type, status], by_key.get((job_type, status), 0))
    yield now_in
    yield created
    yield ended
    running = GaugeMetricFamily(
        f"{PREFIX}_running_jobs",
        "Running jobs per worker slot (spec, check, discover, sync), over every engine process.",
        labels=["slot"],
    )
    busy: dict[str, int] = dict.fromkeys(sorted({job_type.slot for job_type in JobType}), 0)
    for job_type in JobType:
        busy[job_type.slot] += by_key.get((job_type.value, JobStatus.RUNNING.value), 0)
    for slot, count in busy.items():
        running.add_metric([slot], count)
    yield running
    if limits:
        limit = GaugeMetricFamily(
            f"{PREFIX}_running_jobs_limit",
            "MAX_<SLOT>_WORKERS of the engine in this server: running jobs it takes at once, per slot.",
            labels=["slot"],
        )
        for slot, value in sorted(limits.items()):
            limit.add_metric([slot], value)
        yield limit


def pending_families(
    counts: list[JobCount], oldest: Mapping[str, datetime], now: datetime
) -> Iterator[Metric]:
    pending = GaugeMetricFamily(
        f"{PREFIX}_pending_jobs", "Jobs waiting for a worker slot (status pending), by type.", labels=["type"]
    )
    by_type = {count.type: count.count for count in counts if count.status == JobStatus.PENDING.value}
    for job_type in _types(counts):
        pending.add_metric([job_type], by_type.get(job_type, 0))
    yield pending
    age = GaugeMetricFamily(
        f"{PREFIX}_oldest_pending_job_age_seconds",
        "Seconds since the oldest pending job of each type was created; absent when none is pending.",
        labels=["type"],
    )
    for job_type, created in sorted(oldest.items()):
        age.add_metric([job_type], max((now - created).total_seconds(), 0.0))
    yield age


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    pairs = zip(histogram.bounds, histogram.cumulative, strict=True)
    return [
        *((str(float(bound)), float(count)) for bound, count in pairs),
        ("+Inf", float(histogram.count)),
    ]


def duration_family(durations: list[DurationTally]) -> Metric:
    family = HistogramMetricFamily(
        f"{PREFIX}_attempt_duration_seconds",
        "How long ended attempts ran (start to end), by job type and attempt status.",
        labels=["type", "status"],
    )
    for tally in sorted(durations, key=lambda t: (t.type, t.status)):
        family.add_metric([tally.type, tally.status], _buckets(tally.histogram), tally.histogram.sum_s)
    return family


def stream_families(streams: list[StreamTotals]) -> Iterator[Metric]:
    fields = [
        ("records_committed", "Records the destination committed (sum over stream stats), by job type."),
        ("bytes_committed", "Bytes the destination committed (sum over stream stats), by job type."),
        ("records_emitted", "Records the source emitted (sum over stream stats), by job type."),
        ("bytes_emitted", "Bytes the source emitted (sum over stream stats), by job type."),
    ]
    for field, documentation in fields:
        family = CounterMetricFamily(f"{PREFIX}_{field}", documentation, labels=["type"])
        for totals in sorted(streams, key=lambda t: t.type):
            family.add_metric([totals.type], getattr(totals, field))
        yield family


def lag_families(lag: LagTally | None) -> list[Metric]:
    """Scheduler lag: due time to job creation. Nothing while the store has no
    ``jobs.scheduled_for`` (``lag`` None): a missing family, not a misleading zero."""
    if lag is None:
        return []
    histogram = HistogramMetricFamily(
        f"{PREFIX}_scheduler_lag_seconds",
        "Seconds from a scheduled run's due time to the creation of its job, over scheduled jobs.",
    )
    histogram.add_metric([], _buckets(lag.histogram), lag.histogram.sum_s)
    families: list[Metric] = [histogram]
    if lag.last_s is not None:
        last = GaugeMetricFamily(
            f"{PREFIX}_scheduler_last_lag_seconds",
            "Due time to creation of the most recently created scheduled job.",
        )
        last.add_metric([], lag.last_s)
        families.append(last)
    return families
