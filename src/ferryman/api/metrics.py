"""``GET /metrics``: Prometheus' text exposition format, computed from the store at scrape time.

Nothing is counted in this process: a scrape runs the store's few aggregate queries
(:meth:`~ferryman.store.base.JobStore.tallies`), so the figures are the same whichever server is
scraped and whichever engine processes, on whichever hosts, ran the jobs. When the store cannot
be read the scrape still answers, with ``ferryman_store_up 0`` and no store families.

Auth: the API's own (token or basic auth when the server requires it). ``--metrics-auth
loopback`` lets a client on a loopback address (a Prometheus on the same host) scrape without
credentials; every other client still needs them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from ferryman import __version__
from ferryman.api.auth import Guard
from ferryman.api.metric_families import PREFIX, store_families
from ferryman.api.server import MetricsAuth, is_loopback
from ferryman.clock import Clock
from ferryman.errors import StoreError
from ferryman.store.base import JobStore

log = logging.getLogger("ferryman.api.metrics")


@dataclass(frozen=True)
class MetricsOptions:
    auth: MetricsAuth = MetricsAuth.API
    # MAX_*_WORKERS of the engine in this server, per slot; empty when it runs none (--no-engine).
    limits: Mapping[str, int] = field(default_factory=dict)


class StoreCollector:
    """A prometheus_client collector whose every ``collect`` reads the store afresh.

    Ages (the oldest pending job's) are counted to the store's time, read with the figures, as
    jobs are stamped with it: a server whose clock is off shows them true. A ``clock`` given
    (tests) counts them to its time instead."""

    def __init__(self, store: JobStore, limits: Mapping[str, int], clock: Clock | None = None) -> None:
        self.store = store
        self.limits = dict(limits)
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            f"{PREFIX}_build_info", "Always 1; the labels say which ferryman.", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        start = time.perf_counter()
        try:
            tallies = self.store.tallies()
        except StoreError as exc:  # the store is down: say so, and keep the scrape alive
            log.warning("metrics: cannot read the store: %s", str(exc).splitlines()[0])
            tallies = None
        elapsed = time.perf_counter() - start
        up = GaugeMetricFamily(f"{PREFIX}_store_up", "1 when this scrape could read the store, else 0.")
        up.add_metric([], 1 if tallies is not None else 0)
        yield up
        took = GaugeMetricFamily(
            f"{PREFIX}_store_query_seconds", "How long this scrape's queries to the store took."
        )
        took.add_metric([], elapsed)
        yield took
        if tallies is not None:
            now = tallies.read_at if self.clock is None else self.clock.now()
            yield from store_families(tallies, self.limits, now)


@dataclass(eq=False)  # hashed: FastAPI caches dependencies by callable
class MetricsGuard:
    guard: Guard
    auth: MetricsAuth

    def __call__(self, request: Request) -> None:
        client = request.client.host if request.client else ""
        if self.auth is MetricsAuth.LOOPBACK and is_loopback(client):
            return
        self.guard(request)


def metrics_router(store: JobStore, guard: Guard, options: MetricsOptions) -> APIRouter:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, options.limits))
    registry.register(ProcessCollector(registry=None))
    router = APIRouter(tags=["metrics"])

    @router.get(
        "/metrics",
        dependencies=[Depends(MetricsGuard(guard, options.auth))],
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}}, "description": "Prometheus text format"}},
    )
    def metrics() -> Response:  # a plain def: FastAPI runs it in a thread, off the event loop
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return router
