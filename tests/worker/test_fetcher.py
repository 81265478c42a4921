"""The fetcher never leases more than the executor's free slots, whichever way it claims."""

from __future__ import annotations

import asyncio

import redis

from conveyor import Conveyor, TaskState
from conveyor.broker.keys import GlobalKeys
from tests.support.worker import in_state, running_worker, wait_all, wait_until


async def test_a_busy_worker_that_skips_a_suspect_waits_without_claiming(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    running, most = 0, 0
    # the two busy tasks end when the test says, not after a time it hopes is long enough
    release = {"long": asyncio.Event(), "short": asyncio.Event()}

    @aapp.task(name="work")
    async def work(hold: str) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        if hold in release:
            await release[hold].wait()
        running -= 1

    keys = GlobalKeys(prefix).queue("default")
    busy = await aapp.enqueue_many_async([aapp.message("work", h) for h in ("long", "short")])
    async with running_worker(aapp, concurrency=2):
        await wait_until(lambda: asyncio.sleep(0, running == 2), 10, "both slots to be busy")
        # no slot is free, so nothing is claimed while the suspect is set up
        suspect = await aapp.enqueue_async("work", "-")
        r.hset(keys.task(suspect.id), "crashes", 1)
        rest = await aapp.enqueue_many_async([aapp.message("work", "-") for _ in range(20)])
        assert r.llen(keys.signal) == 1  # the wake-up token the enqueues left
        release["short"].set()
        await wait_all(busy[1:], TaskState.SUCCEEDED, 10, "the short task to end")
        # the next claim (of one task) meets the suspect, which only an idle worker may
        # take, and skips it; the fetcher then waits on the signal list, taking the token.
        # The wait is where a claim of the rest used to ride (and run as the token was
        # taken), so once the token is gone the rest must still be pending

        async def waited_or_claimed() -> bool:
            return r.llen(keys.signal) == 0 or not await in_state(rest, TaskState.PENDING)

        await wait_until(waited_or_claimed, 10, "the fetcher to wait")
        assert await in_state([suspect, *rest], TaskState.PENDING)
        assert running == 1
        release["long"].set()
        await wait_all([*busy, suspect, *rest], TaskState.SUCCEEDED, 20, "every task")
    assert most <= 2
