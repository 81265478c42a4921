"""A live resharding under load, on a Cluster of this module's own (the session's is shared):
while producers (async and sync) enqueue to a busy queue and a worker runs it, the queue's
slot migrates to another master key batch by key batch, as `redis-cli --cluster reshard`
does. Clients meet ASK, TRYAGAIN and MOVED meanwhile; every task must run exactly once, no
enqueue may fail, and the worker must keep running throughout."""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Iterator

import pytest
from redis.crc import key_slot

from conveyor import Conveyor, TaskContext, TaskState
from conveyor.broker import cluster as sync_side
from conveyor.broker import cluster_async as async_side
from conveyor.broker.keys import GlobalKeys
from conveyor.errors import BrokerUnavailableError
from conveyor.producer import TaskHandle
from conveyor.settings import Settings
from tests.cluster.conftest import CLUSTER_BINARY
from tests.support.cluster import LocalCluster
from tests.support.worker import running_worker, wait_until

pytestmark = pytest.mark.slow

#: Seconds of load before and after the migration (the migration itself takes about one).
LOAD = 1.0
#: Keys per MIGRATE and the pause between two: the slot stays split for about a second.
BATCH, PAUSE = 10, 0.02


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    """A Cluster whose slot layout this module may change (about 4 s to start)."""
    if CLUSTER_BINARY is None:
        pytest.skip("no redis-server for a Cluster")
    with LocalCluster(CLUSTER_BINARY) as running:
        yield running


class SyncProducer(threading.Thread):
    """Enqueues with the sync producer until told to stop; keeps what it got."""

    def __init__(self, app: Conveyor, queue: str) -> None:
        super().__init__(name="sync-producer", daemon=True)
        self.app, self.queue = app, queue
        self.handles: list[TaskHandle] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.handles.append(
                    self.app.enqueue("job", f"s{len(self.handles)}", queue=self.queue)
                )
            except Exception as exc:  # reported by the test
                self.errors.append(exc)
            time.sleep(0.005)


async def test_every_task_runs_once_while_its_queue_slot_migrates(
    own_cluster: LocalCluster, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor")
    # every script of the queue answers TRYAGAIN while its slot is split (each names its
    # task-prefix key, which never exists): leases must outlast the migration (about 1 s)
    settings = Settings(redis_url=own_cluster.url, prefix=prefix, lease_timeout=10.0)
    queue = "busy"
    slot = key_slot(f"{prefix}:{{{queue}}}:pending".encode())
    source = own_cluster.master_of(f"{prefix}:{{{queue}}}:pending")
    target = next(m for m in own_cluster.primaries() if m is not source)
    app = Conveyor(settings=settings)
    ran: collections.Counter[str] = collections.Counter()

    @app.task(name="job")
    async def job(key: str, ctx: TaskContext) -> None:
        ran[ctx.task_id] += 1
        await asyncio.sleep(0.002)

    handles: list[TaskHandle] = []
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def produce() -> None:
        while not stop.is_set():
            try:
                handles.append(await app.enqueue_async("job", f"a{len(handles)}", queue=queue))
            except Exception as exc:
                errors.append(exc)
            await asyncio.sleep(0.003)

    sync_producer = SyncProducer(Conveyor(settings=settings), queue)
    try:
        async with running_worker(app, queue, concurrency=8) as worker:
            producing = asyncio.ensure_future(produce())
            sync_producer.start()
            await asyncio.sleep(LOAD)
            moved = await asyncio.to_thread(own_cluster.move_slot, slot, target, BATCH, PAUSE)
            await asyncio.sleep(LOAD)
            stop.set()
            sync_producer.stop.set()
            await producing
            await asyncio.to_thread(sync_producer.join, 10)
            everything = [*handles, *sync_producer.handles]

            async def all_ran() -> bool:
                records = await app.async_inspector().records([h.id for h in everything])
                return all(r is not None and r.state is TaskState.SUCCEEDED for r in records)

            await wait_until(all_ran, 20, "every task to succeed")
            assert worker.id  # still the worker started above: it never stopped
        assert (errors, sync_producer.errors) == ([], [])
        assert own_cluster.master_of(f"{prefix}:{{{queue}}}:pending") is target
        assert moved > 100, f"only {moved} keys moved: the slot was never split for long"
        assert len(handles) > 100 and len(sync_producer.handles) > 100
        assert set(ran) == {h.id for h in everything}
        assert [k for k, n in ran.items() if n != 1] == []
        stats = app.inspector.queue_stats()
        assert [(s.pending, s.active, s.scheduled, s.dead) for s in stats] == [(0, 0, 0, 0)]
        assert app.inspector.fsck() == []
        # no component failed, no outage was declared, no lease was lost
        troubles = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
                    or "lost Redis" in r.getMessage() or "was lost" in r.getMessage()]  # fmt: skip
        assert troubles == []
    finally:
        stop.set()
        sync_producer.stop.set()
        await app.aclose()
        app.close()
        sync_producer.app.close()


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
