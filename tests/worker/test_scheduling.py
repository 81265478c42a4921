"""Delayed tasks: promoted when due, never early, exactly once across workers."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import redis

from conveyor import Conveyor, TaskContext, TaskState
from conveyor.producer import TaskHandle
from tests.support.keyspace import dump
from tests.support.worker import running_worker, wait_until


async def _all_succeeded(handles: Sequence[TaskHandle]) -> bool:
    for handle in handles:
        record = await handle.record_async()
        if record is None or record.state != TaskState.SUCCEEDED:
            return False
    return True


async def test_delayed_tasks_run_no_earlier_than_their_delay(aapp: Conveyor) -> None:
    started: dict[str, float] = {}

    @aapp.task
    async def stamp(ctx: TaskContext) -> None:
        started[ctx.task_id] = time.time()

    async with running_worker(aapp):
        enqueued = time.time()
        handles = [stamp.enqueue(delay=0.5) for _ in range(5)]
        for handle in handles:
            record = await handle.record_async()
            assert record is not None and record.state == TaskState.SCHEDULED
            assert record.due_at is not None
        await wait_until(lambda: _all_succeeded(handles), 10, "the delayed tasks to run")
    for handle in handles:
        waited = started[handle.id] - enqueued
        # Redis stamps due times in whole milliseconds: allow one of rounding
        assert waited >= 0.5 - 0.001, f"ran {waited:.3f}s after enqueue"
        assert waited < 2.5, f"ran {waited:.3f}s after enqueue"


async def test_two_workers_run_each_delayed_task_exactly_once(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    runs: Counter[str] = Counter()
    workers: dict[str, str] = {}

    @aapp.task
    async def count(ctx: TaskContext) -> None:
        runs[ctx.task_id] += 1
        workers[ctx.task_id] = ctx.worker_id

    async with running_worker(aapp, concurrency=10), running_worker(aapp, concurrency=10):
        handles = aapp.enqueue_many([count.message(delay=0.4) for _ in range(200)])
        assert len(dump(r, prefix)[f"{prefix}:{{default}}:scheduled"]) == 200
        await wait_until(lambda: _all_succeeded(handles), 15, "every delayed task to run")
    assert set(runs) == {h.id for h in handles}
    assert set(runs.values()) == {1}, [i for i, n in runs.items() if n > 1]
    assert len(set(workers.values())) == 2  # both workers took part
    for handle in handles:
        record = await handle.record_async()
        assert record is not None and (record.attempts, record.token) == (1, 1)
    keys = dump(r, prefix)
    assert f"{prefix}:{{default}}:scheduled" not in keys  # promoted, and nothing left behind


async def test_an_eta_in_the_past_runs_at_once(aapp: Conveyor) -> None:
    @aapp.task
    async def now() -> str:
        return "ran"

    async with running_worker(aapp):
        started = time.monotonic()
        handle = now.enqueue(eta=datetime.now(UTC) - timedelta(minutes=5))
        record = await handle.record_async()
        assert record is not None and record.state != TaskState.SCHEDULED
        assert record.due_at is None  # it never waited in the scheduled set
        assert await handle.result_async(timeout=5) == "ran"
        assert time.monotonic() - started < 1.0
