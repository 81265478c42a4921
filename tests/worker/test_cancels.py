"""The CancelListener: hears a running task's cancel on its queues' channels, listens
again after Redis comes back, and never holds up a stop."""

from __future__ import annotations

import asyncio
import time

import redis

from conveyor import Conveyor
from conveyor.tools.embedded import RedisServer
from conveyor.worker.cancels import CancelListener
from tests.support.worker import wait_until


def subscribers(r: redis.Redis, channel: str) -> int:
    return int(dict(r.pubsub_numsub(channel))[channel.encode()])


async def test_a_cancel_on_one_of_its_queues_reaches_the_executor(
    aapp: Conveyor, r: redis.Redis
) -> None:
    heard: list[str] = []
    broker = aapp.async_broker()
    listener = CancelListener(broker, ["a", "b"], heard.append)
    stop = asyncio.Event()
    job = asyncio.create_task(listener.run(stop))
    a, b, other = (broker.ops.queue_keys(q).cancels for q in ("a", "b", "other"))
    await wait_until(lambda: _true(subscribers(r, b) == 1), 10, "the subscription")
    r.publish(other, "other:1")  # not one of its queues
    r.publish(a, "a:1")
    r.publish(b, "b:2")
    await wait_until(lambda: _true(len(heard) == 2), 5, "two cancels")
    assert heard == ["a:1", "b:2"]
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(job, 5)
    assert time.monotonic() - started < 0.5  # a stop does not wait out a poll
    # the connection is closed; Redis drops its subscriptions when it reads the close
    await wait_until(lambda: _true(subscribers(r, a) == 0), 5, "the unsubscription")


async def test_it_listens_again_once_redis_is_back(aapp: Conveyor, outage: RedisServer) -> None:
    heard: list[str] = []
    broker = aapp.async_broker()
    listener = CancelListener(broker, ["default"], heard.append)
    stop = asyncio.Event()
    job = asyncio.create_task(listener.run(stop))
    channel = broker.ops.queue_keys("default").cancels
    client = redis.Redis.from_url(outage.url)
    try:
        await wait_until(lambda: _true(subscribers(client, channel) == 1), 10, "a subscription")
        client.close()
        outage.stop()
        await asyncio.sleep(0.5)
        outage.start()
        client = redis.Redis.from_url(outage.url)
        await wait_until(lambda: _true(subscribers(client, channel) == 1), 20, "a resubscription")
        client.publish(channel, "default:1")
        await wait_until(lambda: _true(heard == ["default:1"]), 5, "the cancel after the outage")
        assert not job.done()
    finally:
        stop.set()
        await asyncio.wait_for(job, 10)
        client.close()


async def _true(value: bool) -> bool:
    return value
