"""A master of a busy queue killed with SIGKILL: its replica is promoted, and the producer
and the worker carry on without a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from conveyor import Conveyor, TaskState
from conveyor.errors import BrokerUnavailableError
from conveyor.producer import TaskHandle
from conveyor.settings import Settings
from tests.cluster.conftest import CLUSTER_BINARY
from tests.support.cluster import LocalCluster, spread_queues
from tests.support.worker import running_worker, wait_all

pytestmark = pytest.mark.slow


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A Cluster of this test alone: it loses a master."""
    assert CLUSTER_BINARY is not None
    with LocalCluster(CLUSTER_BINARY) as running:
        yield running


async def test_a_killed_master_is_replaced_and_producer_and_worker_carry_on(
    own_cluster: LocalCluster, prefix: str
) -> None:
    settings = Settings(redis_url=own_cluster.url, prefix=prefix, lease_timeout=2.0,
                        retry_backoff_base=0.01, retry_backoff_cap=0.05)  # fmt: skip
    busy, other = spread_queues(own_cluster, prefix)[:2]
    victim = own_cluster.master_of(f"{prefix}:{{{busy}}}:pending")
    app = Conveyor(settings=settings)
    app.task(name="echo")(lambda x: x)
    refused = 0

    async def enqueue(i: int) -> TaskHandle:
        nonlocal refused
        while True:
            try:
                return await app.enqueue_async("echo", i, queue=busy)
            except BrokerUnavailableError:
                refused += 1
                await asyncio.sleep(0.1)

    try:
        async with running_worker(app, f"{busy},{other}", concurrency=4):
            before = [await enqueue(i) for i in range(20)]
            await wait_all(before, TaskState.SUCCEEDED)
            victim.kill()
            killed_at = time.monotonic()
            during = [await enqueue(i) for i in range(20, 40)]  # refused until promoted
            promoted_after = time.monotonic() - killed_at
            after = [await enqueue(i) for i in range(40, 60)]
            await wait_all([*during, *after], TaskState.SUCCEEDED, timeout=20)
        assert refused > 0  # the outage was real
        assert victim.port != own_cluster.master_of(f"{prefix}:{{{busy}}}:pending").port
        assert promoted_after < 15
        assert [h.result() for h in after] == list(range(40, 60))
    finally:
        await app.aclose()
        app.close()
