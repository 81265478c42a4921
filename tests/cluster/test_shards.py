"""A queue split into shards on a real Redis Cluster: its shards land on several
masters, and one worker serves them all."""

from __future__ import annotations

from collections import Counter

import pytest

from conveyor import Conveyor, TaskState
from conveyor.ids import queue_of
from conveyor.settings import Settings
from conveyor.shards import shard_names
from tests.support.cluster import LocalCluster
from tests.support.worker import running_worker, wait_all

pytestmark = pytest.mark.slow


async def test_a_split_queue_uses_several_masters_and_one_worker_drains_it(
    cluster: LocalCluster, cluster_settings: Settings
) -> None:
    app = Conveyor(settings=cluster_settings.replace(shards={"hot": 8}))

    @app.task(name="echo", queue="hot")
    def echo(n: int) -> int:
        return n

    try:
        handles = app.enqueue_many([echo.message(n) for n in range(160)])
        handles += [await app.enqueue_async("echo", n) for n in range(16)]
        assert Counter(queue_of(h.id) for h in handles) == {q: 22 for q in shard_names("hot", 8)}
        nodes = await app.async_inspector().queue_nodes(shard_names("hot", 8))
        assert len(set(nodes.values())) >= 2, nodes  # the hash tags spread over the masters
        async with running_worker(app, "hot", concurrency=8):
            await wait_all(handles, TaskState.SUCCEEDED, 30, "every shard's tasks to run")
        assert sorted(h.result() for h in handles) == sorted([*range(160), *range(16)])
    finally:
        await app.aclose()
        app.close()
