"""The fetcher never leases more than the executor's free slots, whichever way it claims."""

from __future__ import annotations

import asyncio

import redis

from conveyor import Conveyor, TaskState
from conveyor.broker.keys import GlobalKeys
from tests.support.worker import running_worker, wait_all, wait_until


async def test_a_busy_worker_that_skips_a_suspect_waits_without_claiming(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    running, most = 0, 0

    @aapp.task(name="work")
    async def work(seconds: float) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(seconds)
        running -= 1

    busy = await aapp.enqueue_many_async([aapp.message("work", s) for s in (1.0, 0.3)])
    async with running_worker(aapp, concurrency=2):
        await wait_until(lambda: asyncio.sleep(0, running == 2), 5, "both slots to be busy")
        # no slot is free, so nothing is claimed while the suspect is set up; when the
        # short task ends, the next claim (of one task) meets the suspect, which only an
        # idle worker may take, and skips it: the worker must then wait, not lease the rest
        suspect = await aapp.enqueue_async("work", 0.01)
        r.hset(GlobalKeys(prefix).queue("default").task(suspect.id), "crashes", 1)
        rest = await aapp.enqueue_many_async([aapp.message("work", 0.01) for _ in range(20)])
        await wait_all([*busy, suspect, *rest], TaskState.SUCCEEDED, 20, "every task")
    assert most <= 2
