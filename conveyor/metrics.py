"""Prometheus metrics: task counters and histograms, queue gauges read from Redis at scrape
time, and the exporter a worker serves on :2112.

Counters live in the process that counts (a producer counts its enqueues, a worker its
outcomes). With PROMETHEUS_MULTIPROC_DIR set, prometheus_client keeps them in files that
the `--workers N` supervisor sums, so several processes report correct totals.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Iterator, Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from conveyor.broker.inspect import SyncInspector
from conveyor.broker.sync_broker import SyncBroker
from conveyor.errors import ConveyorError
from conveyor.settings import Settings

log = logging.getLogger("conveyor.metrics")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                    60, 120, 300, 600)  # fmt: skip

TASKS_ENQUEUED = Counter(
    "conveyor_tasks_enqueued", "Tasks enqueued by this process.", ["queue", "task"]
)
TASKS_PROCESSED = Counter(
    "conveyor_tasks_processed",
    "Attempts that ended, by outcome: succeeded, failed, retried or dead.",
    ["queue", "task", "outcome"],
)
TASK_DURATION = Histogram(
    "conveyor_task_duration_seconds",
    "Time a handler ran, per attempt.",
    ["queue", "task"],
    buckets=_LATENCY_BUCKETS,
)
TASK_WAIT = Histogram(
    "conveyor_task_wait_seconds",
    "Time from enqueue (or the due time of a delayed task or retry) to each attempt's claim.",
    ["queue"],
    buckets=_LATENCY_BUCKETS,
)


def child(metric: Counter | Histogram, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once: labels() costs more than the work it counts
    (label sets are bounded: queues, task names and outcomes, never ids)."""
    key = (metric, labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


_children: dict[tuple[Counter | Histogram, tuple[str, ...]], Any] = {}


def count_enqueued(labels: Sequence[tuple[str, str]]) -> None:
    """Count enqueued tasks by (queue, task), one increment per distinct pair."""
    if len(labels) == 1:  # one enqueue: skip the tally
        child(TASKS_ENQUEUED, *labels[0]).inc()
        return
    for (queue, task), n in Tally(labels).items():
        child(TASKS_ENQUEUED, queue, task).inc(n)


class QueueCollector(Collector):
    """Gauges read from Redis at each scrape: depth per state, lag, and live workers."""

    def __init__(self, inspector: SyncInspector, queues: Sequence[str] | None = None) -> None:
        self.inspector = inspector
        self.queues = queues

    def describe(self) -> Iterator[Metric]:
        """The gauge families, without reading Redis (registration must not do I/O)."""
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        depth, lag, workers = self._families()
        try:
            stats = self.inspector.queue_stats(self.queues or None)
            alive = self._workers_per_queue()
        except ConveyorError as exc:  # a scrape must not fail because Redis is down
            log.warning("queue gauges unavailable: %s", exc)
            return
        for s in stats:
            for state in ("pending", "active", "scheduled", "dead"):
                depth.add_metric([s.name, state], getattr(s, state))
            lag.add_metric([s.name], s.lag_seconds)
            workers.add_metric([s.name], alive.get(s.name, 0))
        yield from (depth, lag, workers)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "conveyor_queue_depth", "Tasks per queue and state.", labels=["queue", "state"]
        )
        lag = GaugeMetricFamily(
            "conveyor_queue_lag_seconds",
            "How long the next pending task has waited (autoscaling signal).",
            labels=["queue"],
        )
        workers = GaugeMetricFamily(
            "conveyor_workers", "Workers alive by heartbeat, per queue.", labels=["queue"]
        )
        return depth, lag, workers

    def _workers_per_queue(self) -> Tally[str]:
        counts: Tally[str] = Tally()
        for info in self.inspector.workers():
            counts.update(info.get("queues", []))
        return counts


#: Ports an exporter tries, from the one asked for: the second worker on a host takes the
#: next (2113), and says so, rather than run without metrics.
PORT_TRIES = 10


class Exporter:
    """Serves a registry plus the queue gauges at http://host:port/metrics from a daemon
    thread (prometheus_client's server), with a Redis connection of its own."""

    def __init__(
        self,
        server: WSGIServer,
        port: int,
        collector: QueueCollector,
        registry: CollectorRegistry,
    ) -> None:
        self._server = server
        #: the port it listens on (the one asked for, or the next free one)
        self.port = port
        self.collector = collector
        self.registry = registry

    @classmethod
    def serve(
        cls,
        settings: Settings,
        queues: Sequence[str] | None,
        port: int,
        host: str = "0.0.0.0",
        registry: CollectorRegistry = REGISTRY,
        tries: int = PORT_TRIES,
    ) -> Exporter | None:
        """Start serving on `port`, or the first free one of the `tries` from it (logged
        at WARNING, with the port); None if none could be bound. Metrics never stop a
        worker: it runs on without them."""
        bound = _bind(port, host, registry, tries)
        if bound is None:
            return None
        server, actual = bound
        collector = QueueCollector(SyncInspector(SyncBroker(settings)), queues)
        registry.register(collector)
        if actual == port:
            log.info("metrics on http://%s:%d/metrics", host, actual)
        else:
            log.warning(
                "metrics on http://%s:%d/metrics: port %d is taken (another worker on this "
                "host?); scrape this one too", host, actual, port,
            )  # fmt: skip
        return cls(server, actual, collector, registry)

    def stop(self) -> None:
        """Stop serving, forget the queue gauges, close the connection."""
        self._server.shutdown()
        self._server.server_close()
        self.registry.unregister(self.collector)
        self.collector.inspector.broker.close()


def _bind(
    port: int, host: str, registry: CollectorRegistry, tries: int
) -> tuple[WSGIServer, int] | None:
    """The server on the first port of `port`.. that binds, and that port."""
    last = port + max(tries, 1) - 1
    error: OSError | None = None
    for candidate in range(port, min(last, 65535) + 1):
        try:
            server, _ = start_http_server(candidate, addr=host, registry=registry)
        except OSError as exc:
            error = exc
            continue
        return server, candidate
    log.warning("metrics exporter not started on %s:%d-%d: %s", host, port, last, error)
    return None
