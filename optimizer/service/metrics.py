"""Prometheus metrics of one service process (``GET /metrics``).

Each :class:`ServiceMetrics` has its own ``CollectorRegistry`` (two apps in one test process do
not share counters). Counters and histograms are fed by the drivers (as their
:class:`~optimizer.campaign.driver.DriverObserver`), the scheduler (lease changes) and the pull
routes; the per-status query gauges are read from the database at scrape time, so they are
right whichever replica drives a campaign.

    tiltloop_queries{campaign,status}           gauge   queries per status (database)
    tiltloop_in_flight{campaign}                gauge   pending + dispatched + running
    tiltloop_results_total{campaign,status}     counter queries finished by this process
    tiltloop_oracle_latency_seconds{campaign}   histo   dispatched → finished, per query
    tiltloop_round_phase_seconds{phase}         histo   round generation time by phase
    tiltloop_lease_changes_total{change}        counter acquired / released / lost
    tiltloop_pull_items_total{action}           counter claimed / reported by lab clients
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from storage import QueryRecord, Storage
from storage.errors import StorageError

log = logging.getLogger(__name__)

#: Oracle latency spans a simulator's milliseconds to a lab's days.
LATENCY_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86_400, 7 * 86_400)
PHASE_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800)
#: The content type Prometheus scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StorageCollector(Collector):
    """Query counts per campaign and status, read from the database at each scrape."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queries = GaugeMetricFamily("tiltloop_queries", "Queries per campaign and status",
                                    labels=["campaign", "status"])
        in_flight = GaugeMetricFamily("tiltloop_in_flight",
                                      "Queries pending, dispatched or running", labels=["campaign"])
        try:
            for rec in self.storage.list_campaigns():
                counts = self.storage.query_counts(rec.name)
                for status, n in counts.items():
                    queries.add_metric([rec.name, status], n)
                in_flight.add_metric([rec.name], counts["pending"] + counts["dispatched"]
                                     + counts["running"])
        except StorageError as exc:  # a scrape during a database outage: the rest still answers
            log.warning("metrics: reading query counts failed (%s); gauges left out", exc)
            return
        yield queries
        yield in_flight


class ServiceMetrics:
    """The metrics of one service process; also a ``DriverObserver``."""

    def __init__(self, storage: Storage | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.results = Counter("tiltloop_results", "Queries finished by this process",
                               ["campaign", "status"], registry=r)
        self.oracle_latency = Histogram("tiltloop_oracle_latency_seconds",
                                        "Seconds from dispatch to a final result, per query",
                                        ["campaign"], buckets=LATENCY_BUCKETS, registry=r)
        self.round_phase = Histogram("tiltloop_round_phase_seconds",
                                     "Seconds of round generation, by phase", ["phase"],
                                     buckets=PHASE_BUCKETS, registry=r)
        self.lease_changes = Counter("tiltloop_lease_changes", "Campaign lease changes seen "
                                     "by this process", ["change"], registry=r)
        self.pull_items = Counter("tiltloop_pull_items", "Work items claimed or reported by lab "
                                  "clients", ["action"], registry=r)
        if storage is not None:
            r.register(_StorageCollector(storage))

    # DriverObserver
    def round_recorded(self, campaign: str, timings: Mapping[str, float]) -> None:
        """Observe each phase's seconds (keys ending in ``_s``: ``fit_s`` → phase ``fit``)."""
        for key, seconds in timings.items():
            if key.endswith("_s") and isinstance(seconds, (int, float)) and seconds >= 0:
                self.round_phase.labels(phase=key.removesuffix("_s")).observe(float(seconds))

    def queries_finished(self, campaign: str, records: Sequence[QueryRecord]) -> None:
        """Count each final status; observe dispatch → finish latency where both are known."""
        for q in records:
            self.results.labels(campaign=campaign, status=q.status).inc()
            if q.dispatched_at is not None and q.finished_at is not None:
                seconds = (q.finished_at - q.dispatched_at).total_seconds()
                if seconds >= 0:
                    self.oracle_latency.labels(campaign=campaign).observe(seconds)

    def lease_changed(self, change: str, n: int = 1) -> None:
        """``change``: "acquired", "released" or "lost"."""
        if n:
            self.lease_changes.labels(change=change).inc(n)

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)


def sample(metrics: ServiceMetrics, name: str, labels: dict[str, str] | None = None) -> Any:
    """One sample's value (tests, benchmarks), or None when it has not been recorded."""
    return metrics.registry.get_sample_value(name, labels or {})
