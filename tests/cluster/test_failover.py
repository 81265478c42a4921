"""kill -9 the master of a busy queue of a Redis Cluster under load: its replica is
promoted, and the producer, a worker subprocess and the API carry on without a restart.
Every acknowledged task is accounted for: without `durable` a loss is counted and
reported (replication is asynchronous); with it, none may be lost."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Conveyor
from conveyor.settings import Settings
from tests.api.conftest import api_client
from tests.cluster.conftest import CLUSTER_BINARY
from tests.support.cluster import LocalCluster, spread_queues
from tests.support.failover import Producer, accepts, account, acked_since, settle
from tests.support.processes import WorkerProcess
from tests.support.worker import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A Cluster of this test alone: it loses a master."""
    assert CLUSTER_BINARY is not None
    with LocalCluster(CLUSTER_BINARY) as running:
        yield running


@pytest.mark.parametrize("durable", [False, True], ids=["plain", "durable"])
async def test_a_killed_master_under_load_is_replaced_and_every_task_accounted_for(
    own_cluster: LocalCluster, prefix: str, tmp_path: Path, durable: bool
) -> None:
    settings = Settings(redis_url=own_cluster.url, prefix=prefix, lease_timeout=2.0,
                        retry_backoff_base=0.01, retry_backoff_cap=0.05)  # fmt: skip
    busy, other = spread_queues(own_cluster, prefix)[:2]
    busy_key = f"{prefix}:{{{busy}}}:pending"
    victim = own_cluster.master_of(busy_key)
    runs = tmp_path / "runs.txt"
    runs.touch()
    app = Conveyor(settings=settings)
    producer = Producer(app, durable, queue=busy)
    worker = WorkerProcess(
        settings, tmp_path, "--queues", f"{busy},{other}", "--concurrency", "16",
        app="tests.support.failover_tasks:app", CONVEYOR_TEST_RUNS=str(runs),
    )  # fmt: skip
    try:
        async with api_client(settings) as api:
            producer.start()
            await wait_until(lambda: acked_since(producer, 0.0, 300), 20, "the load")
            killed = time.monotonic()
            victim.kill()
            await wait_until(lambda: _moved(own_cluster, busy_key, victim.port), 20, "promotion")
            promoted, promoted_wall = time.monotonic(), time.time()
            if durable:  # the promoted master has no replica until the old one comes back
                victim.start()
            await wait_until(lambda: acked_since(producer, killed, 100), 30, "acks after it")
            await wait_until(lambda: accepts(api), 15, "the API to enqueue again")
            stats = await api.get("/stats")
            assert stats.status_code == 200, stats.text
            producer.stopping.set()
            await asyncio.to_thread(producer.join, 10)
        acked = [task_id for _, task_id in producer.acked]
        lost, states = await asyncio.to_thread(settle, app, acked)
        assert worker.alive(), worker.log()  # the same worker process, never restarted
        worker.signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.wait, 20) == 0, worker.log()
    finally:
        producer.stopping.set()
        worker.stop()
        app.close()
        await app.aclose()
    account(
        f"Cluster failover (kill -9{', durable' if durable else ''})",
        producer,
        lost,
        states,
        runs,
        killed,
        promoted,
        promoted_wall,
    )


async def _moved(cluster: LocalCluster, key: str, old_port: int) -> bool:
    """Whether another node than `old_port` serves `key` now (its replica was promoted)."""
    try:
        return await asyncio.to_thread(lambda: cluster.master_of(key).port != old_port)
    except Exception:  # the dead node may be the one asked
        return False
