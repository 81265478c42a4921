"""metrics.py: the counters a producer and a worker keep, the queue gauges read from Redis
at scrape time, and a worker's own exporter (`GET /metrics` of the API is tested in
tests/api/test_metrics.py)."""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from conveyor import Conveyor, TaskState
from conveyor.broker.inspect import SyncInspector
from conveyor.broker.keys import GlobalKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.ids import id_millis
from conveyor.metrics import PORT_TRIES, Exporter, QueueCollector, count_enqueued
from conveyor.settings import Settings
from conveyor.tools.embedded import free_port
from tests.broker.seed import redis_ms
from tests.support.keyspace import DEPTHS, depths
from tests.support.metrics import (
    EXPOSED,
    Samples,
    conveyor_families,
    labels,
    own_queue,
    parse,
    register,
    registry_value,
)
from tests.support.worker import running_worker, wait_all, wait_until

#: Reads the queue gauges now, as a scrape does.
Gauges = Callable[[], Samples]


def collector(settings: Settings) -> tuple[QueueCollector, CollectorRegistry]:
    """A queue collector of `settings`' deployment, alone in a registry of its own."""
    registry = CollectorRegistry()
    queue_collector = QueueCollector(SyncInspector(SyncBroker(settings)))
    registry.register(queue_collector)
    return queue_collector, registry


@pytest.fixture
def gauges(settings: Settings) -> Iterator[Gauges]:
    """Scrapes the queue gauges of this test's keyspace, as the API's /metrics does."""
    queue_collector, registry = collector(settings)
    yield lambda: parse(generate_latest(registry).decode())[0]
    queue_collector.inspector.broker.close()


@pytest.fixture
def long_lease(settings: Settings) -> Iterator[SyncBroker]:
    """A broker whose claims hold their lease for a minute (no recoverer takes them back)."""
    broker = SyncBroker(settings.replace(lease_timeout=60))
    yield broker
    broker.close()


def test_count_enqueued_counts_each_queue_and_task(prefix: str) -> None:
    queue = own_queue(prefix)
    count_enqueued([(queue, "a")])  # one enqueue
    count_enqueued([(queue, "a"), (queue, "b"), (queue, "a")])  # a batch
    assert registry_value("conveyor_tasks_enqueued_total", queue=queue, task="a") == 3
    assert registry_value("conveyor_tasks_enqueued_total", queue=queue, task="b") == 1


async def test_queue_gauges_match_the_keyspace(
    aapp: Conveyor, long_lease: SyncBroker, gauges: Gauges, r: redis.Redis, prefix: str
) -> None:
    register(aapp)
    queue = own_queue(prefix)
    boom = aapp.enqueue("boom", queue=queue)
    async with running_worker(aapp, queue):
        await wait_all([boom], TaskState.DEAD, 15, "the task to die")
    pending = [aapp.enqueue("ok", i, queue=queue) for i in range(3)]
    [claimed] = long_lease.run(long_lease.ops.claim(queue, 1, "test-claimer")).tasks
    assert claimed.id == pending[0].id
    assert aapp.inspector.set_paused(queue, True).paused
    aapp.enqueue("ok", 9, queue=queue, delay=60)
    aapp.enqueue("ok", 1, queue="other")
    assert depths(r, prefix, queue) == {"pending": 2, "active": 1, "scheduled": 1, "dead": 1}

    async with running_worker(aapp, queue):  # alive, but claims nothing from a paused queue

        async def registered() -> bool:
            scraped = await asyncio.to_thread(gauges)
            return scraped.get(("conveyor_workers", labels(queue=queue))) == 1

        await wait_until(registered, 10, "the worker to show in conveyor_workers")
        head = r.lindex(GlobalKeys(prefix).queue(queue).ready, 0)  # new: the lag is its id's age
        head_ms = id_millis(head.decode())  # type: ignore[union-attr]
        earliest = (redis_ms(r) - head_ms) / 1000
        samples = await asyncio.to_thread(gauges)
        latest = (redis_ms(r) - head_ms) / 1000

    for name in (queue, "other"):
        exposed = {
            s: samples[("conveyor_queue_depth", labels(queue=name, state=s))] for s in DEPTHS
        }
        assert exposed == depths(r, prefix, name)
    assert samples[("conveyor_workers", labels(queue=queue))] == 1
    assert samples[("conveyor_workers", labels(queue="other"))] == 0
    lag = samples[("conveyor_queue_lag_seconds", labels(queue=queue))]
    assert earliest - 0.001 <= lag <= latest + 0.001
    assert lag > 0
    depth_queues = {dict(key[1])["queue"] for key in samples if key[0] == "conveyor_queue_depth"}
    assert depth_queues == {queue, "other"}  # this deployment's queues, no one else's


def test_a_scrape_while_redis_is_down_has_no_gauges(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    down = settings.replace(redis_url=f"redis://127.0.0.1:{port}/0", connect_timeout=0.5)
    queue_collector, registry = collector(down)
    try:
        # registering described the families without reading Redis; a scrape then fails
        # softly: no gauge, a warning, and the process's own counters still served
        assert [m.name for m in queue_collector.describe()] == [
            "conveyor_queue_depth", "conveyor_queue_lag_seconds", "conveyor_workers",
        ]  # fmt: skip
        assert list(queue_collector.collect()) == []
        assert generate_latest(registry) == b""
    finally:
        queue_collector.inspector.broker.close()
    assert f"queue gauges unavailable: Redis at 127.0.0.1:{port} is unavailable" in caplog.text


def test_an_exporter_whose_port_is_taken_takes_the_next_and_says_which(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        registry = CollectorRegistry()
        exporter = Exporter.serve(settings, None, port, "127.0.0.1", registry)
        assert exporter is not None
        try:
            assert port < exporter.port < port + PORT_TRIES
            answer = httpx.get(f"http://127.0.0.1:{exporter.port}/metrics", trust_env=False)
            assert answer.status_code == 200
        finally:
            exporter.stop()
        [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
        said = warning.getMessage()
        assert f"http://127.0.0.1:{exporter.port}/metrics" in said and f"port {port} " in said
        # with no other port to try, it is not started, and leaves nothing behind
        assert Exporter.serve(settings, None, port, "127.0.0.1", registry, tries=1) is None
    assert f"metrics exporter not started on 127.0.0.1:{port}-{port}" in caplog.text
    assert list(registry.collect()) == []  # no collector left behind with its connection


async def test_a_second_worker_on_a_host_serves_on_the_next_port_and_says_where(
    aapp: Conveyor,
) -> None:
    with socket.socket() as taken:  # the first worker's exporter
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with running_worker(aapp, metrics_port=port, metrics_host="127.0.0.1") as worker:

            async def serving() -> bool:
                return worker.metrics_bound is not None

            await wait_until(serving, 10, "the exporter to start")
            assert worker.metrics_bound is not None
            assert port < worker.metrics_bound < port + PORT_TRIES

            async def described() -> bool:
                mine = [w for w in aapp.inspector.workers() if w["id"] == worker.id]
                return bool(mine) and mine[0].get("metrics_port") == worker.metrics_bound

            await wait_until(described, 10, "the registry to say where the metrics are")
            async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
                url = f"http://127.0.0.1:{worker.metrics_bound}/metrics"
                assert (await http.get(url)).status_code == 200
    async with running_worker(aapp, metrics_port=0) as without:

        async def described_without() -> bool:
            mine = [w for w in aapp.inspector.workers() if w["id"] == without.id]
            return bool(mine) and "metrics_port" in mine[0]

        await wait_until(described_without, 10, "the worker to register")
        [mine] = [w for w in aapp.inspector.workers() if w["id"] == without.id]
        assert mine["metrics_port"] is None


async def test_a_workers_own_exporter(aapp: Conveyor, r: redis.Redis, prefix: str) -> None:
    register(aapp)
    queue = own_queue(prefix)
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    async with (
        httpx.AsyncClient(trust_env=False, timeout=5) as http,
        running_worker(aapp, queue, metrics_port=port, metrics_host="127.0.0.1"),
    ):
        handles = [await aapp.enqueue_async("ok", i, queue=queue) for i in range(2)]
        assert [await h.result_async(timeout=10) for h in handles] == [0, 1]

        async def registered() -> bool:
            try:
                text = (await http.get(url)).text
            except httpx.TransportError:  # not listening yet
                return False
            return parse(text)[0].get(("conveyor_workers", labels(queue=queue))) == 1

        await wait_until(registered, 10, "the exporter to show the worker")
        response = await http.get(url)
        assert response.status_code == 200
        samples, families = parse(response.text)
    # every family, and no other: the same as the API's /metrics (tests/api/test_metrics.py)
    assert conveyor_families(families) == EXPOSED

    def value(name: str, **values: str) -> float:
        return samples[(name, labels(**values))]

    assert value("conveyor_tasks_processed_total", queue=queue, task="ok", outcome="succeeded") == 2
    assert value("conveyor_task_duration_seconds_count", queue=queue, task="ok") == 2
    assert value("conveyor_task_wait_seconds_count", queue=queue) == 2
    assert value("conveyor_tasks_enqueued_total", queue=queue, task="ok") == 2
    exposed = {s: value("conveyor_queue_depth", queue=queue, state=s) for s in DEPTHS}
    assert exposed == depths(r, prefix, queue) == dict.fromkeys(DEPTHS, 0)
    assert value("conveyor_queue_lag_seconds", queue=queue) == 0
    assert value("conveyor_workers", queue=queue) == 1
    assert not math.isnan(value("conveyor_task_duration_seconds_sum", queue=queue, task="ok"))
    # a stopped worker stops serving
    async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url)
