"""The Heartbeat: one round trip per beat extends every held lease and renews the worker's
registration; long tasks keep their leases, unless a handler stalls its whole worker."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

from conveyor import Conveyor, TaskContext, TaskState
from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.keys import QueueKeys
from conveyor.broker.records import ClaimedTask
from conveyor.model import to_millis
from conveyor.settings import Settings
from conveyor.worker.heartbeat import Heartbeat
from conveyor.worker.leases import Leases
from conveyor.worker.runtime import Worker
from tests.broker.seed import clock, lose_lease
from tests.support.handlers import read_ledger
from tests.support.keyspace import dump
from tests.support.processes import WorkerProcess
from tests.support.worker import running_worker, wait_until

LEASE = 1.0
#: How long the GIL-holding handler runs: well past a lease plus a recoverer period.
HOLD = 5.0  # calibrated, so it may come out shorter on a loaded machine


async def _holding(app: Conveyor, count: int, worker_id: str) -> tuple[Leases, list[ClaimedTask]]:
    """`count` tasks enqueued and claimed by `worker_id`, held in a Leases."""
    broker = app.async_broker()
    await app.enqueue_many_async([app.message("job", i) for i in range(count)])
    tasks = (await broker.run(broker.ops.claim("default", count, worker_id))).tasks
    assert len(tasks) == count
    leases = Leases()
    for task in tasks:
        leases.add(task)
    return leases, tasks


# -- one beat ----------------------------------------------------------------------------


async def test_a_beat_extends_every_held_lease_and_registers_the_worker(
    aapp: Conveyor, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    broker: AsyncBroker = aapp.async_broker()
    leases, tasks = await _holding(aapp, 2, "hb-1")
    r.zadd(keys.active, {t.id: 1 for t in tasks}, xx=True)  # about to expire: renewal shows
    info = {"id": "hb-1", "queues": ["default"], "concurrency": 3}
    heartbeat = Heartbeat(broker, leases, "hb-1", lambda: info)
    with clock(r) as window:
        wait = await heartbeat.beat()
    assert wait == aapp.settings.heartbeat_interval
    lease = to_millis(aapp.settings.lease_timeout)
    assert dump(r, prefix)[keys.active] == {t.id: window.at(lease) for t in tasks}
    assert await aapp.async_inspector().workers() == [info]
    assert len(leases) == 2


async def test_a_lost_lease_is_released_and_left_to_its_new_owner(
    aapp: Conveyor, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    leases, (kept, lost) = await _holding(aapp, 2, "hb-1")
    lose_lease(aapp.sync_broker(), lost, "reclaimed")  # w2 holds it now, under token 2
    theirs = dump(r, prefix)[keys.active][lost.id]
    heartbeat = Heartbeat(aapp.async_broker(), leases, "hb-1", lambda: {"id": "hb-1"})
    await heartbeat.beat()
    assert (leases.get(kept.id), leases.get(lost.id)) == (kept, None)
    assert dump(r, prefix)[keys.active][lost.id] == theirs  # w2's lease is not extended
    assert r.hget(keys.task(lost.id), "worker") == b"w2"


async def test_run_beats_until_stopped_then_deregisters(aapp: Conveyor) -> None:
    inspector = aapp.async_inspector()
    heartbeat = Heartbeat(aapp.async_broker(), Leases(), "hb-run", lambda: {"id": "hb-run"})
    stop = asyncio.Event()
    job = asyncio.create_task(heartbeat.run(stop))

    async def registered() -> bool:
        return await inspector.workers() == [{"id": "hb-run"}]

    await wait_until(registered, 5, "the first beat")
    stop.set()
    await asyncio.wait_for(job, 5)
    assert await inspector.workers() == []


async def test_a_worker_is_registered_while_running_and_deregistered_after(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    inspector = aapp.async_inspector()
    worker = Worker(aapp, "default", concurrency=7, worker_id="shutdown-test-worker")
    job = asyncio.create_task(worker.run())

    async def registered() -> bool:
        return [w["id"] for w in await inspector.workers()] == ["shutdown-test-worker"]

    await wait_until(registered, 10, "the worker to register")
    [info] = await inspector.workers()
    assert (info["queues"], info["concurrency"]) == (["default"], 7)
    worker.stop()
    await asyncio.wait_for(job, 10)
    assert await inspector.workers() == []
    assert not [k for k in dump(r, prefix) if "worker" in k]


# -- long tasks ----------------------------------------------------------------------------


async def test_heartbeats_keep_the_leases_of_long_tasks(
    app_with: Callable[..., Conveyor],
) -> None:
    lease_app = app_with(lease_timeout=LEASE)
    starts: list[tuple[str, int]] = []

    @lease_app.task(max_retries=0)
    async def slow_async(ctx: TaskContext) -> str:
        starts.append((ctx.task_id, ctx.token))
        await asyncio.sleep(3.5)
        return "async"

    @lease_app.task(max_retries=0)
    def slow_sync(ctx: TaskContext) -> str:
        starts.append((ctx.task_id, ctx.token))
        time.sleep(3.5)
        return "sync"

    # the second worker's recoverer would take over any lease left to expire
    async with running_worker(lease_app), running_worker(lease_app):
        handles = [slow_async.enqueue(), slow_sync.enqueue()]
        results = [await h.result_async(timeout=15) for h in handles]
    assert results == ["async", "sync"]
    assert sorted(starts) == sorted((h.id, 1) for h in handles)
    for handle in handles:
        record = await handle.record_async()
        assert record is not None
        assert (record.state, record.attempts, record.token, record.crashes) == (
            TaskState.SUCCEEDED, 1, 1, 0,
        )  # fmt: skip


@contextlib.contextmanager
def gil_workers(settings: Settings, log_dir: Path, count: int = 2) -> Iterator[list[WorkerProcess]]:
    """`count` worker subprocesses running tests.worker.gil_tasks:app, stopped after."""
    workers: list[WorkerProcess] = []
    try:
        for i in range(count):
            args = ("--processes", "1", "--worker-id", f"gil-{i}")
            worker = WorkerProcess(
                settings.replace(lease_timeout=LEASE), log_dir, *args,
                app="tests.worker.gil_tasks:app", CONVEYOR_SHUTDOWN_GRACE="1",
            )  # fmt: skip
            workers.append(worker)
        yield workers
    finally:
        for worker in workers:
            if worker.alive():
                worker.signal(signal.SIGTERM)
        for worker in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(10)
            worker.stop()


async def _registered(app: Conveyor, count: int) -> None:
    inspector = app.async_inspector()

    async def all_up() -> bool:
        return len(await inspector.workers()) == count

    await wait_until(all_up, 15, f"{count} workers to register")


def _seconds(start: dict[str, object], end: dict[str, object]) -> float:
    return float(str(end["time"])) - float(str(start["time"]))


def _events(r: redis.Redis, prefix: str, event: str) -> list[dict[str, object]]:
    return [e for e in read_ledger(r, prefix) if e["event"] == event]


async def test_a_thread_holding_the_gil_past_its_lease_is_taken_over(
    app_with: Callable[..., Conveyor], r: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    """The documented limitation: the stalled worker cannot renew its lease, so another
    worker recovers the task and runs it again; fencing drops the stalled attempt's ack."""
    lease_app = app_with(lease_timeout=LEASE)
    url = lease_app.settings.redis_url
    with gil_workers(lease_app.settings, tmp_path) as workers:
        await _registered(lease_app, 2)
        handle = lease_app.enqueue("hold_gil", HOLD, url, prefix)
        assert await handle.result_async(timeout=20) == 2  # the takeover's attempt

        async def dropped() -> bool:
            return any("outcome dropped" in worker.log() for worker in workers)

        await wait_until(dropped, 15, "the stalled attempt's ack to be refused")
    starts = _events(r, prefix, "start")
    assert [(e["attempt"], e["token"]) for e in starts] == [(1, 1), (2, 2)]
    assert starts[0]["worker"] != starts[1]["worker"]
    first_end = next(e for e in _events(r, prefix, "end") if e["attempt"] == 1)
    assert _seconds(starts[0], first_end) > 2 * LEASE  # it really outlived its lease
    record = await handle.record_async()
    assert record is not None
    assert (record.state, record.attempts, record.token, record.crashes, record.result) == (
        TaskState.SUCCEEDED, 2, 2, 1, 2,
    )  # fmt: skip


async def test_the_same_handler_in_a_child_process_keeps_its_lease(
    app_with: Callable[..., Conveyor], r: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    lease_app = app_with(lease_timeout=LEASE)
    url = lease_app.settings.redis_url
    with gil_workers(lease_app.settings, tmp_path):
        await _registered(lease_app, 2)
        handle = lease_app.enqueue("hold_gil_in_process", HOLD, url, prefix)
        assert await handle.result_async(timeout=20) == 1
    [start] = _events(r, prefix, "start")
    [end] = _events(r, prefix, "end")
    assert start["pid"] == end["pid"] and (start["attempt"], start["token"]) == (1, 1)
    held = _seconds(start, end)
    assert held > 2 * LEASE, f"the handler held the GIL for only {held:.2f}s"
    record = await handle.record_async()
    assert record is not None
    assert (record.state, record.attempts, record.token, record.crashes) == (
        TaskState.SUCCEEDED, 1, 1, 0,
    )  # fmt: skip


async def test_a_beat_names_the_held_tasks_being_cancelled(aapp: Conveyor) -> None:
    """The fallback of a cancel message lost on pub/sub: the renewal reply names the task."""
    leases, (kept, cancelled) = await _holding(aapp, 2, "hb-1")
    assert await aapp.async_inspector().cancel(cancelled.id) is TaskState.CANCELLING
    told: list[str] = []
    heartbeat = Heartbeat(
        aapp.async_broker(), leases, "hb-1", lambda: {"id": "hb-1"}, on_cancel=told.append
    )
    await heartbeat.beat()
    assert told == [cancelled.id]
    assert (leases.get(kept.id), leases.get(cancelled.id)) == (kept, cancelled)  # still held
