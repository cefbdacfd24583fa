"""Prometheus metrics of one service process, served at ``/metrics`` (docs/events.md lists them).

Two kinds, kept apart on purpose:

* in-process counters and histograms (attempts started and ended by outcome, acquire latency,
  steering-run latency, event-handler queues): what this replica did since it started; the
  steering child's runs reach them through ``hposteer.service.events.forward``. Sum them over replicas.
* database gauges (points and tasks by state, active pilots, running attempts): the whole
  installation, read at scrape time and cached for ``cache_s``; every replica reports the same
  values, so take one replica's (or ``max``), never the sum.

Each app gets its own registry (no module-level state), so tests can run several services in
one process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from hposteer.service.core.states import AttemptState, PointState, TaskState
from hposteer.service.events.bus import HandlerStats
from hposteer.service.store.database import Database
from hposteer.service.store.gauges import Gauges, read_gauges

log = logging.getLogger("hposteer.metrics")

# What generate_latest writes; every Prometheus (2.x and 3.x) reads it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ATTEMPT_OUTCOMES = tuple(s.value for s in AttemptState if s is not AttemptState.RUNNING)
STEERING_OUTCOMES = ("ok", "exhausted", "failed")
ACQUIRE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STEERING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class _DatabaseGauges(Collector):
    """Gauges read from the database at scrape time, at most once per ``cache_s``."""

    def __init__(self, db: Database, pilot_window_s: float, cache_s: float):
        self._db = db
        self._window_s = pilot_window_s
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._cached: tuple[float, Gauges | None] = (float("-inf"), None)

    def _gauges(self) -> Gauges | None:
        with self._lock:
            read_at, gauges = self._cached
            if time.monotonic() - read_at < self._cache_s:
                return gauges
            try:
                with self._db.read() as conn:
                    gauges = read_gauges(conn, self._window_s)
            except Exception as exc:
                log.warning("metrics: the database gauges could not be read: %s", exc)
                gauges = None
            self._cached = (time.monotonic(), gauges)
            return gauges

    def collect(self) -> Iterable[Metric]:
        gauges = self._gauges()
        up = GaugeMetricFamily("hposteer_database_up", "1 when the last read of the database gauges succeeded")
        up.add_metric([], 1.0 if gauges is not None else 0.0)
        yield up
        if gauges is None:
            return
        points = GaugeMetricFamily("hposteer_points", "Points of all tasks by state", labels=["state"])
        for state in PointState:
            points.add_metric([state.value], gauges.points.get(state.value, 0))
        yield points
        tasks = GaugeMetricFamily("hposteer_tasks", "Tasks by state", labels=["state"])
        for task_state in TaskState:
            tasks.add_metric([task_state.value], gauges.tasks.get(task_state.value, 0))
        yield tasks
        pilots = GaugeMetricFamily(
            "hposteer_pilots_active", "Pilots that asked for work within pilot_seen_window_min or hold an attempt"
        )
        pilots.add_metric([], gauges.active_pilots)
        yield pilots
        running = GaugeMetricFamily("hposteer_attempts_running", "Attempts holding a lease now")
        running.add_metric([], gauges.running_attempts)
        yield running


class _HandlerQueues(Collector):
    """The event bus's per-handler counters (handled, failed, dropped) and queue lengths."""

    def __init__(self, stats: Callable[[], dict[str, HandlerStats]]):
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        stats = self._stats()
        handled = CounterMetricFamily("hposteer_events_handled", "Events handled, by handler", labels=["handler"])
        failed = CounterMetricFamily("hposteer_events_failed", "Events a handler raised on", labels=["handler"])
        dropped = CounterMetricFamily(
            "hposteer_events_dropped", "Events dropped because the handler's queue was full", labels=["handler"]
        )
        queued = GaugeMetricFamily("hposteer_events_queued", "Events waiting for a handler", labels=["handler"])
        for name, s in stats.items():
            handled.add_metric([name], s.handled)
            failed.add_metric([name], s.failed)
            dropped.add_metric([name], s.dropped)
            queued.add_metric([name], s.queued)
        yield from (handled, failed, dropped, queued)


class ServiceMetrics:
    """The Meters of the service process (core.events) and the registry ``/metrics`` renders."""

    def __init__(
        self,
        db: Database,
        *,
        pilot_window_s: float,
        handler_stats: Callable[[], dict[str, HandlerStats]],
        cache_s: float = 1.0,
    ):
        self.registry = CollectorRegistry()
        r = self.registry
        self._started = Counter("hposteer_attempts_started", "Attempts this replica handed to pilots", registry=r)
        self._ended = Counter(
            "hposteer_attempts_ended", "Attempts that ended on this replica, by outcome", ["outcome"], registry=r
        )
        self._acquire = Histogram(
            "hposteer_acquire_duration_seconds",
            "Time to answer a pilot's acquire on this replica (job: a point was claimed; idle: no work)",
            ["result"],
            buckets=ACQUIRE_BUCKETS,
            registry=r,
        )
        self._steering = Histogram(
            "hposteer_steering_run_duration_seconds",
            "Steering runs of this replica's steering loop, optimiser call included, by outcome",
            ["outcome"],
            buckets=STEERING_BUCKETS,
            registry=r,
        )
        self._reports = Counter(
            "hposteer_intermediate_reports_stored",
            "Intermediate reports this replica stored from heartbeats (re-sent ones not counted)",
            registry=r,
        )
        # Every label value exists from the start (rate() needs the zeros); children are looked up once.
        self._ended_by = {outcome: self._ended.labels(outcome) for outcome in ATTEMPT_OUTCOMES}
        self._acquire_job, self._acquire_idle = self._acquire.labels("job"), self._acquire.labels("idle")
        self._steering_by = {outcome: self._steering.labels(outcome) for outcome in STEERING_OUTCOMES}
        r.register(_DatabaseGauges(db, pilot_window_s, cache_s))
        r.register(_HandlerQueues(handler_stats))
        ProcessCollector(registry=r)

    def attempt_started(self) -> None:
        self._started.inc()

    def attempt_ended(self, outcome: str) -> None:
        child = self._ended_by.get(outcome)
        (child if child is not None else self._ended.labels(outcome)).inc()

    def acquire(self, seconds: float, claimed: bool) -> None:
        (self._acquire_job if claimed else self._acquire_idle).observe(seconds)

    def steering_run(self, seconds: float, outcome: str) -> None:
        child = self._steering_by.get(outcome)
        (child if child is not None else self._steering.labels(outcome)).observe(seconds)

    def reports_stored(self, count: int) -> None:
        self._reports.inc(count)

    def render(self) -> bytes:
        """The exposition text (format 0.0.4)."""
        return generate_latest(self.registry)
