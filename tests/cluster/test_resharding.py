"""A live resharding under load, on a Cluster of this module's own (the session's is shared):
while producers (async and sync) enqueue to a busy queue and a worker runs it, the queue's
slot migrates to another master key batch by key batch, as `redis-cli --cluster reshard`
does. Clients meet ASK, TRYAGAIN and MOVED meanwhile; every task must run exactly once, no
enqueue may fail, and the worker must keep running throughout."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis.crc import key_slot

from conveyor import Conveyor, TaskState
from conveyor.broker import cluster as sync_side
from conveyor.broker import cluster_async as async_side
from conveyor.broker.keys import GlobalKeys
from conveyor.errors import BrokerUnavailableError
from conveyor.settings import Settings
from tests.cluster.conftest import CLUSTER_BINARY
from tests.cluster.resharding import QUEUE, reshard_under_load
from tests.support.cluster import LocalCluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    """A Cluster whose slot layout this module may change (about 4 s to start)."""
    if CLUSTER_BINARY is None:
        pytest.skip("no redis-server for a Cluster")
    with LocalCluster(CLUSTER_BINARY) as running:
        yield running


async def test_every_task_runs_once_while_its_queue_slot_migrates(
    own_cluster: LocalCluster, prefix: str
) -> None:
    # every script of the queue answers TRYAGAIN while its slot is split (each names its
    # task-prefix key, which never exists): leases must outlast the migration (about 1 s)
    settings = Settings(redis_url=own_cluster.url, prefix=prefix, lease_timeout=10.0)
    source = own_cluster.master_of(f"{prefix}:{{{QUEUE}}}:pending")
    seen = await reshard_under_load(own_cluster, settings, migrations=1, load=1.0)
    assert own_cluster.master_of(f"{prefix}:{{{QUEUE}}}:pending") is not source
    assert seen.moved[0] > 100, f"only {seen.moved} keys moved: the slot was barely split"
    assert seen.errors == []  # no enqueue failed
    assert len(seen.enqueued) > 200
    assert seen.ran == dict.fromkeys(seen.enqueued, 1)  # each ran, once
    assert len(seen.workers) == 1  # the one worker, registered all along
    assert seen.troubles == []  # no component failed, no outage, no lease lost
    app = Conveyor(settings=settings)
    try:
        stats = app.inspector.queue_stats()
        assert [(s.pending, s.active, s.scheduled, s.dead) for s in stats] == [(0, 0, 0, 0)]
        assert app.inspector.fsck() == []
        records = app.inspector.records(seen.enqueued)
        assert {r.state if r else None for r in records} == {TaskState.SUCCEEDED}
    finally:
        app.close()


async def test_a_slot_left_split_fails_as_unavailable_then_recovers_once_moved(
    own_cluster: LocalCluster, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a migration stalled half way: only the queue's registry of pending tasks has moved
    for module in (sync_side, async_side):
        monkeypatch.setattr(module, "MIGRATION_WAIT", 0.5)
    settings = Settings(redis_url=own_cluster.url, prefix=prefix)
    queue = "stalled"
    keys = GlobalKeys(prefix).queue(queue)
    slot = key_slot(keys.pending.encode())
    source = own_cluster.master_of(keys.pending)
    target = next(m for m in own_cluster.primaries() if m is not source)
    app = Conveyor(settings=settings)
    try:
        first = app.enqueue("job", queue=queue, priority=-1)  # a pending ZSET to move
        with own_cluster.splitting(slot, target) as split:
            split.migrate([keys.pending])
            started = time.monotonic()
            with pytest.raises(BrokerUnavailableError, match="Redis Cluster"):
                app.enqueue("job", queue=queue, priority=-1)
            with pytest.raises(BrokerUnavailableError, match="Redis Cluster"):
                await app.enqueue_async("job", queue=queue, priority=-1)
            assert time.monotonic() - started < 5
        later = app.enqueue("job", queue=queue, priority=-1)
        assert [s.pending for s in app.inspector.queue_stats()] == [2]
        assert {r.id for r in app.inspector.records([first.id, later.id]) if r} == {
            first.id,
            later.id,
        }
    finally:
        await app.aclose()
        app.close()
