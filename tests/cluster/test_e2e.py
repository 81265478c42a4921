"""Producers, a worker, the Inspector and the seed API on a real Redis Cluster, with queues
spread over its three masters."""

from __future__ import annotations

import pytest

from conveyor import Conveyor, Retry, TaskState
from conveyor.settings import Settings
from tests.api.conftest import api_client
from tests.api.helpers import enqueue, record
from tests.support.cluster import LocalCluster, spread_queues
from tests.support.worker import running_worker, wait_all

pytestmark = pytest.mark.slow


@pytest.fixture
def capp(cluster_settings: Settings) -> Conveyor:
    return Conveyor(settings=cluster_settings)


async def test_tasks_of_queues_on_every_master_succeed_retry_and_die(
    cluster: LocalCluster, cluster_settings: Settings, capp: Conveyor
) -> None:
    queues = spread_queues(cluster, cluster_settings.prefix)
    masters = {cluster.master_of(f"{cluster_settings.prefix}:{{{q}}}:pending").port for q in queues}
    assert len(masters) == 3
    attempts: dict[str, int] = {}

    @capp.task(name="flaky", max_retries=2)
    def flaky(key: str) -> str:
        attempts[key] = attempts.get(key, 0) + 1
        if attempts[key] < 2:
            raise Retry(delay=0.01)
        return key

    @capp.task(name="doomed", max_retries=0)
    def doomed() -> None:
        raise ValueError("no")

    @capp.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    try:
        sync = [capp.enqueue("add", 1, i, queue=q) for i, q in enumerate(queues)]
        asynced = [await capp.enqueue_async("add", 2, i, queue=q) for i, q in enumerate(queues)]
        bulk = capp.enqueue_many(
            [capp.message("add", 3, i, queue=queues[i % 3]) for i in range(30)]
        )
        retried = [capp.enqueue("flaky", q, queue=q) for q in queues]
        dead = [capp.enqueue("doomed", queue=q) for q in queues]
        async with running_worker(capp, ",".join(queues), concurrency=8):
            await wait_all([*sync, *asynced, *bulk, *retried], TaskState.SUCCEEDED)
            await wait_all(dead, TaskState.DEAD)
        assert sync[2].result() == 3 and bulk[29].result() == 32
        assert all(attempts[q] == 2 for q in queues)
        stats = {s.name: s for s in capp.inspector.queue_stats()}
        assert set(stats) == set(queues)
        assert all((s.pending, s.active, s.dead) == (0, 0, 1) for s in stats.values())
    finally:
        await capp.aclose()
        capp.close()


async def test_the_seed_api_queues_and_counts_on_the_cluster(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    queues = spread_queues(cluster, cluster_settings.prefix)
    async with api_client(cluster_settings) as client:
        response = await client.post("/task", json={"type": "email", "payload": "a@b.c"})
        assert response.status_code == 202, response.text
        ids = [await enqueue(client, "send", queue=q) for q in queues]
        assert (await record(client, ids[1]))["state"] == "pending"
        response = await client.get("/stats")
    assert response.status_code == 200
    stats = response.json()
    assert stats["pending"] == 4
    assert sorted(stats["queues"]) == sorted(["default", *queues])
