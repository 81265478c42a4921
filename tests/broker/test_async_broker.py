"""async_broker.py: an idle worker's claim rides behind its BLPOP (`wait_then_run`); woken
by an enqueue, it gets the task. Its other methods are the transport's (test_transport.py)
and the scripts' (test_<script>.py)."""

from __future__ import annotations

import asyncio

import redis

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys
from tests.support.worker import wait_until


def blocked_clients(r: redis.Redis) -> int:
    """Connections Redis holds blocked (on BLPOP here): a wait is under way once it grows."""
    return int(r.info("clients")["blocked_clients"])


async def blocking(r: redis.Redis, before: int) -> None:
    """Return once one more connection than `before` is blocked in Redis."""

    async def more() -> bool:
        return blocked_clients(r) > before

    await wait_until(more, 10, "the wait to block in Redis")


async def test_a_claim_behind_the_wait_gets_the_task_that_woke_it(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    broker = aapp.async_broker()
    await aapp.enqueue_async("warm.up")
    await broker.run(broker.ops.claim("default", 10, "w1"))  # empties the queue
    r.delete(GlobalKeys(prefix).queue("default").signal)  # and takes its wake-up token
    claim_op = broker.ops.claim("default", 10, "w1")
    before = blocked_clients(r)
    waiting = asyncio.create_task(broker.wait_then_run("default", 30.0, claim_op))
    await blocking(r, before)
    assert not waiting.done()  # blocked on Redis: the claim has not run yet
    handle = await aapp.enqueue_async("t", 1)
    claim = await asyncio.wait_for(waiting, 10.0)
    assert claim is not None
    assert [t.id for t in claim.tasks] == [handle.id]
    record = await handle.record_async()
    assert record is not None and record.state == "active" and record.worker == "w1"


async def test_a_wait_that_times_out_still_claims_nothing(aapp: Conveyor) -> None:
    broker = aapp.async_broker()
    claim = await broker.wait_then_run("default", 0.1, broker.ops.claim("default", 10, "w1"))
    assert claim is not None and claim.tasks == []


async def test_a_lost_script_cache_returns_none_and_loses_nothing(
    aapp: Conveyor, r: redis.Redis
) -> None:
    broker = aapp.async_broker()
    handle = await aapp.enqueue_async("t", 1)
    r.script_flush()
    claim = await broker.wait_then_run("default", 1.0, broker.ops.claim("default", 10, "w1"))
    assert claim is None  # nothing ran: the caller claims again with run(), which reloads
    retry = await broker.run(broker.ops.claim("default", 10, "w1"))
    assert [t.id for t in retry.tasks] == [handle.id]


async def test_a_cancelled_wait_claims_nothing(aapp: Conveyor, r: redis.Redis) -> None:
    broker = aapp.async_broker()
    claim_op = broker.ops.claim("default", 10, "w1")
    assert (await broker.run(claim_op)).tasks == []  # loads the script: it could run below
    before = blocked_clients(r)
    waiting = asyncio.create_task(broker.wait_then_run("default", 30.0, claim_op))
    await blocking(r, before)  # the claim now sits behind the BLPOP, in Redis
    waiting.cancel()  # a worker shutting down while idle
    await asyncio.gather(waiting, return_exceptions=True)
    handle = await aapp.enqueue_async("t", 1)
    # Had the BLPOP outlived the cancel, the enqueue's wake-up token would have ended it and
    # Redis would have run the claim behind it before answering the enqueue; so another
    # worker's claim, sent after that answer, gets the task only if w1 claimed nothing
    other = await broker.run(broker.ops.claim("default", 10, "w2"))
    assert [t.id for t in other.tasks] == [handle.id]
    record = await handle.record_async()
    assert record is not None and record.worker == "w2" and record.token == 1
