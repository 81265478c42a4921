"""Durable enqueues and min_replicas on a real 3+3 Redis Cluster: each WAIT goes to the
master that took the writes, on their connection, so a task is on that master's replica
when the enqueue returns; with that replica stopped, the enqueue says so
(NotReplicatedError) while the task stays stored, and enqueues on the other masters are
confirmed as before."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator

import pytest

from conveyor import Conveyor, NotReplicatedError, TaskState
from conveyor.broker.keys import GlobalKeys
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer
from tests.support.cluster import LocalCluster, spread_queues
from tests.support.worker import running_worker, wait_all, wait_until

pytestmark = pytest.mark.slow


def on_replica(cluster: LocalCluster, prefix: str, queue: str, task_id: str) -> bool:
    """Whether the replica of `queue`'s master has the task's hash (read with READONLY)."""
    key = GlobalKeys(prefix).queue(queue).task(task_id)
    master = cluster.master_of(key)
    with contextlib.closing(cluster.client(cluster.replica_of(master))) as client:
        client.execute_command("READONLY")  # type: ignore[no-untyped-call]
        return bool(client.exists(key))


@contextlib.contextmanager
def stopped(node: RedisServer) -> Iterator[None]:
    """`node`'s process SIGSTOPped: connected still, it confirms nothing."""
    assert node.process is not None
    os.kill(node.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(node.process.pid, signal.SIGCONT)


@pytest.fixture
async def durable_app(cluster: LocalCluster, cluster_settings: Settings) -> AsyncIterator[Conveyor]:
    app = Conveyor(settings=cluster_settings.replace(replica_timeout=0.2))

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    yield app
    app.close()
    await app.aclose()
    cluster.wait_ok()  # a replica stopped for a while is seen alive again


async def test_durable_enqueues_are_on_the_replica_of_their_master_at_once(
    cluster: LocalCluster, cluster_settings: Settings, durable_app: Conveyor
) -> None:
    prefix = cluster_settings.prefix
    queues = spread_queues(cluster, prefix)
    one = [durable_app.enqueue("add", 1, i, durable=True, queue=q) for i, q in enumerate(queues)]
    one += [
        await durable_app.enqueue_async("add", 2, i, durable=True, queue=q)
        for i, q in enumerate(queues)
    ]
    bulk = durable_app.enqueue_many(
        [durable_app.message("add", 3, i, durable=True, queue=queues[i % 3]) for i in range(9)]
    )
    for handle in [*one, *bulk]:
        assert on_replica(cluster, prefix, handle.id.split(":")[0], handle.id), handle.id


async def test_a_stopped_replica_fails_durable_enqueues_on_its_master_only(
    cluster: LocalCluster, cluster_settings: Settings, durable_app: Conveyor
) -> None:
    prefix = cluster_settings.prefix
    queues = spread_queues(cluster, prefix)
    master = cluster.master_of(GlobalKeys(prefix).queue(queues[0]).pending)
    with stopped(cluster.replica_of(master)):
        with pytest.raises(NotReplicatedError) as sync:
            durable_app.enqueue("add", 1, 1, durable=True, queue=queues[0])
        with pytest.raises(NotReplicatedError) as asyncs:
            await durable_app.enqueue_async("add", 1, 2, durable=True, queue=queues[0])
        others = [durable_app.enqueue("add", 1, 3, durable=True, queue=q) for q in queues[1:]]
        # a bulk enqueue over the three masters: the weakest one answers for all
        with pytest.raises(NotReplicatedError) as bulk:
            durable_app.enqueue_many(
                [
                    durable_app.message("add", 4, i, durable=True, queue=q)
                    for i, q in enumerate(queues)
                ]
            )
    for raised, count in ((sync, 1), (asyncs, 1), (bulk, 3)):
        assert (raised.value.replicas, raised.value.needed, len(raised.value.stored)) == (
            0, 1, count
        )  # fmt: skip
    stored = [i for e in (sync, asyncs, bulk) for i in e.value.stored]
    assert all(on_replica(cluster, prefix, h.id.split(":")[0], h.id) for h in others)
    async with running_worker(durable_app, ",".join(queues)):
        await wait_all(others, TaskState.SUCCEEDED)

        async def all_ran() -> bool:
            records = [durable_app.inspector.task(i) for i in stored]
            return all(r is not None and r.state == TaskState.SUCCEEDED for r in records)

        await wait_until(all_ran, 10, "the tasks stored without confirmation to run")
    await durable_app.aclose()


async def test_outcomes_wait_for_min_replicas_on_their_own_master(
    cluster: LocalCluster, cluster_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = cluster_settings.prefix
    queues = spread_queues(cluster, prefix)
    app = Conveyor(settings=cluster_settings.replace(min_replicas=1, replica_timeout=0.2))

    @app.task(name="echo")
    def echo(x: int) -> int:
        return x

    master = cluster.master_of(GlobalKeys(prefix).queue(queues[0]).pending)
    try:
        fine = [app.enqueue("echo", i, queue=q) for i, q in enumerate(queues[1:])]
        async with running_worker(app, ",".join(queues[1:])):
            await wait_all(fine, TaskState.SUCCEEDED)
        assert "outcome(s) written" not in caplog.text
        lagging = app.enqueue("echo", 9, queue=queues[0])
        with stopped(cluster.replica_of(master)), caplog.at_level(logging.WARNING):
            async with running_worker(app, queues[0]):
                await wait_all([lagging], TaskState.SUCCEEDED)
        assert "1 outcome(s) written, but 0 of the 1 replica(s)" in caplog.text
    finally:
        await app.aclose()
        app.close()
        cluster.wait_ok()


async def test_a_lagging_replica_of_the_registry_s_master_fails_no_durable_enqueue(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    """A new queue's first enqueue also adds it to the queue registry, a key on a master of
    its own: only the task's master is waited for, so a durable task on a healthy master
    is confirmed while the registry's master has a stopped replica."""
    prefix = next(p for n in range(200) if (p := f"{cluster_settings.prefix}r{n}")
                  and cluster.master_of(GlobalKeys(p).queues).port != cluster.master_of(
                      GlobalKeys(p).queue("elsewhere").pending).port)  # fmt: skip
    app = Conveyor(settings=cluster_settings.replace(prefix=prefix, replica_timeout=0.2))
    registry_master = cluster.master_of(GlobalKeys(prefix).queues)
    try:
        with stopped(cluster.replica_of(registry_master)):
            handle = app.enqueue("add", 1, 1, durable=True, queue="elsewhere")
        assert on_replica(cluster, prefix, "elsewhere", handle.id)
        assert "elsewhere" in app.inspector.queue_names()
    finally:
        app.close()
        cluster.wait_ok()
