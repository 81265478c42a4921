"""The Scheduler: delayed tasks and retries promoted when due, never early, exactly once
across workers."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import redis

from conveyor import Conveyor, TaskContext, TaskState
from conveyor.broker.keys import GlobalKeys, QueueKeys
from conveyor.worker.scheduler import MAX_SLEEP, Scheduler
from tests.broker.seed import clock, scores, wait_due
from tests.support.keyspace import dump, entry
from tests.support.worker import LOAD_SLACK, in_state, running_worker, wait_all


async def test_a_pass_promotes_the_due_tasks_of_every_queue(
    aapp: Conveyor, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    due = [aapp.enqueue("job", delay=0.001), aapp.enqueue("job", delay=0.001, queue="emails")]
    later = aapp.enqueue("job", delay=60)
    wait_due(r, keys, due[0].id)
    wait_due(r, GlobalKeys(prefix).queue("emails"), due[1].id)
    scheduler = Scheduler(aapp.async_broker(), ("default", "emails"))
    assert await scheduler.promote() == MAX_SLEEP  # the next due task is a minute away
    assert await in_state(due, TaskState.PENDING)
    assert await in_state([later], TaskState.SCHEDULED)
    assert list(dump(r, prefix)[keys.scheduled]) == [later.id]


async def test_a_pass_sleeps_until_the_next_due_task(
    aapp: Conveyor, r: redis.Redis, keys: QueueKeys
) -> None:
    scheduler = Scheduler(aapp.async_broker(), ("default",))
    assert await scheduler.promote() == MAX_SLEEP  # nothing scheduled at all
    soon = aapp.enqueue("job", delay=0.3)
    due_ms = scores(r, keys.scheduled)[soon.id]
    with clock(r) as window:
        wait = await scheduler.promote()
    assert (due_ms - window.hi) / 1000 <= wait <= (due_ms - window.lo) / 1000 < MAX_SLEEP
    assert await in_state([soon], TaskState.SCHEDULED)  # not due yet: left alone


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
        await wait_all(handles, TaskState.SUCCEEDED, 20, "the delayed tasks to run")
    for handle in handles:
        waited = started[handle.id] - enqueued
        # Redis stamps due times in whole milliseconds: allow one of rounding
        assert waited >= 0.5 - 0.001, f"ran {waited:.3f}s after enqueue"
        # nor late: a pass sleeps at most MAX_SLEEP (test_a_pass_sleeps_until_the_next_due_task
        # checks how long, by Redis's clock); LOAD_SLACK is for a loaded machine
        assert waited < 0.5 + MAX_SLEEP + LOAD_SLACK, f"ran {waited:.3f}s after enqueue"


async def test_two_workers_run_each_delayed_task_exactly_once(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    runs: Counter[str] = Counter()
    workers: dict[str, str] = {}
    held = 0
    both_full = asyncio.Event()

    @aapp.task
    async def count(ctx: TaskContext) -> None:
        nonlocal held
        runs[ctx.task_id] += 1
        workers[ctx.task_id] = ctx.worker_id
        # the first 20 runs wait for each other: with 10 slots a worker, 20 at once fill
        # both workers, so both take part however the machine schedules them
        held += 1
        if held == 20:
            both_full.set()
        await both_full.wait()

    async with running_worker(aapp, concurrency=10), running_worker(aapp, concurrency=10):
        handles = aapp.enqueue_many([count.message(delay=0.4) for _ in range(200)])
        await wait_all(handles, TaskState.SUCCEEDED, 30, "every delayed task to run")
    assert set(runs) == {h.id for h in handles}
    assert set(runs.values()) == {1}, [i for i, n in runs.items() if n > 1]
    assert len(set(workers.values())) == 2  # both workers took part
    for handle in handles:
        record = await handle.record_async()
        assert record is not None and (record.attempts, record.token) == (1, 1)
        # enqueued into the scheduled set (enqueue.lua stamps due_at in the same step), so
        # every run above went through a promotion
        assert record.due_at is not None
    keys = dump(r, prefix)
    assert f"{prefix}:{{default}}:scheduled" not in keys  # promoted, and nothing left behind


async def test_an_eta_in_the_past_runs_at_once(
    aapp: Conveyor, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    @aapp.task
    async def now() -> str:
        return "ran"

    handle = now.enqueue(eta=datetime.now(UTC) - timedelta(minutes=5))
    record = await handle.record_async()
    assert record is not None and record.state == TaskState.PENDING
    assert record.due_at is None  # it never waited in the scheduled set
    # claimable at once, as a task without an eta is: in pending, with no scheduler pass
    # between it and a worker (no worker runs yet, so nothing can have moved it)
    assert dump(r, prefix)[keys.ready] == [entry(handle.id)]
    assert keys.scheduled not in dump(r, prefix)
    async with running_worker(aapp):
        assert await handle.result_async(timeout=10) == "ran"
