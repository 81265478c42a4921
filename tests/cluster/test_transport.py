"""The Cluster transport's routing on a real Cluster: the multi-queue wait, the reaper's
keyless survey, a script a node forgot, and events read across nodes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import cast

import pytest

from conveyor import Conveyor, TaskState
from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.cluster_async import AsyncClusterTransport
from conveyor.broker.events import START
from conveyor.broker.keys import GlobalKeys, worker_connection_name
from conveyor.broker.scripts import Call
from conveyor.settings import Settings
from tests.support.cluster import LocalCluster, spread_queues
from tests.support.worker import running_worker, wait_all, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
async def broker(cluster_settings: Settings) -> AsyncIterator[AsyncBroker]:
    """An asyncio broker on the Cluster (its transport chosen by the URL)."""
    made = AsyncBroker(cluster_settings)
    assert isinstance(made.transport, AsyncClusterTransport)
    yield made
    await made.close()


async def tokens(broker: AsyncBroker, queues: list[str]) -> list[int]:
    """How many wake-up tokens each queue's signal list holds."""
    keys = [broker.ops.queue_keys(q).signal for q in queues]
    return await broker.execute([Call.command("LLEN", key) for key in keys])


async def test_a_wait_over_queues_on_three_masters_wakes_once_and_loses_no_token(
    cluster: LocalCluster, cluster_settings: Settings, broker: AsyncBroker
) -> None:
    queues = spread_queues(cluster, cluster_settings.prefix)
    waiting = asyncio.create_task(broker.wait_for_work(queues, 5.0))
    await asyncio.sleep(0.2)  # every BLPOP is blocked
    signals = [broker.ops.queue_keys(q).signal for q in queues]
    await broker.execute(
        [Call.command("LPUSH", signals[0], 1), Call.command("LPUSH", signals[2], 1)]
    )
    assert await asyncio.wait_for(waiting, 5.0)
    # one token woke this wait; the other is still there for another worker
    assert sum(await tokens(broker, queues)) == 1


async def test_a_cancelled_wait_leaves_no_blpop_behind_to_take_a_token(
    cluster: LocalCluster, cluster_settings: Settings, broker: AsyncBroker
) -> None:
    queues = spread_queues(cluster, cluster_settings.prefix)
    waiting = asyncio.create_task(broker.wait_for_work(queues, 5.0))
    await asyncio.sleep(0.2)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    signals = [broker.ops.queue_keys(q).signal for q in queues]
    await broker.execute([Call.command("LPUSH", key, 1) for key in signals])
    await asyncio.sleep(0.2)
    assert await tokens(broker, queues) == [1, 1, 1]
    assert await broker.wait_for_work(queues, 0.1)  # a token wakes it at once


async def test_the_reaper_sees_a_worker_presence_on_the_workers_node(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    app = Conveyor(settings=cluster_settings)
    broker = app.async_broker()
    # keyless commands without a route go to the client's default node: make it another
    # master than the `{workers}` slot's, so only a routed CLIENT LIST finds presence
    workers = cluster.master_of(GlobalKeys(cluster_settings.prefix).workers)
    client = cast(AsyncClusterTransport, broker.transport).client
    await client.initialize()
    client.set_default_node(next(n for n in client.get_primaries() if n.port != workers.port))
    try:
        async with running_worker(app, "default") as worker:

            async def present() -> bool:
                survey = await broker.run(broker.ops.survey())
                presence = worker_connection_name(worker.id) + ":presence"
                return worker.id in survey.beats and presence in survey.connections

            await wait_until(present, 10, "the worker's presence in the survey")
    finally:
        await app.aclose()
        app.close()


async def test_a_node_that_lost_its_scripts_gets_them_again_and_one_queue_waits_and_claims(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    app = Conveyor(settings=cluster_settings)

    @app.task(name="echo")
    def echo(x: int) -> int:
        return x

    try:
        app.enqueue("echo", 0)  # every script used so far is cached where it ran
        for node in cluster.running():
            with contextlib.closing(cluster.client(node)) as client:
                client.script_flush()
        first = app.enqueue("echo", 1)  # NOSCRIPT: sent again as EVAL
        async with running_worker(app, "default"):
            later = [await app.enqueue_async("echo", i) for i in range(3)]
            await wait_all([first, *later], TaskState.SUCCEEDED)
        assert first.result() == 1
    finally:
        await app.aclose()
        app.close()


async def test_events_of_queues_on_different_nodes_read_as_one_page(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    app = Conveyor(settings=cluster_settings)
    queues = spread_queues(cluster, cluster_settings.prefix)
    try:
        inspector = app.async_inspector()
        handles = [await app.enqueue_async("anything", queue=q) for q in queues]
        page = await inspector.events(queues, after=START)
        assert [(e.queue, e.kind) for e in page] == [(q, "enqueued") for q in queues]
        assert [e.task_id for e in page] == [h.id for h in handles]
        # a blocking read over the three nodes returns what comes while it waits
        cursor = page[-1].id
        follow = asyncio.create_task(inspector.events(queues, after=cursor, block=3.0))
        await asyncio.sleep(0.3)
        late = await app.enqueue_async("anything", queue=queues[1])
        assert [e.task_id for e in await asyncio.wait_for(follow, 5)] == [late.id]
        # the sync side reads the same page
        assert app.inspector.events(queues, after=START) == [
            *page,
            *app.inspector.events([queues[1]], after=cursor),
        ]
    finally:
        await app.aclose()
        app.close()
