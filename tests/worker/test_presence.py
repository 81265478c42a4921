"""Presence: the connection a worker holds open for the reaper lets go at once on stop."""

from __future__ import annotations

import asyncio

import redis

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.keys import worker_connection_name
from conveyor.broker.transport import AsyncTransport
from conveyor.settings import Settings
from conveyor.worker.presence import HOLD, Presence
from tests.support.worker import LOAD_SLACK, wait_until

#: Stops tried, each a loop step later than the one before: they fall on every step of
#: opening the connection and sending the wait, where a lost cancel once held up a stop.
STOPS = 40


async def test_a_stop_ends_presence_at_once_wherever_it_falls(
    settings: Settings, r: redis.Redis
) -> None:
    assert LOAD_SLACK < HOLD  # a wait run out would miss the bound below
    name = f"{worker_connection_name('w')}:presence"
    for steps in range(STOPS):
        broker = AsyncBroker(settings, AsyncTransport(settings, name=worker_connection_name("w")))
        stop = asyncio.Event()
        job = asyncio.create_task(Presence(broker, "w").run(stop))
        for _ in range(steps):
            await asyncio.sleep(0)
        stop.set()
        # on Python 3.11 a cancel that landed as redis-py finished connecting or sending
        # was dropped, and the stop waited out the whole HOLD (30 s)
        await asyncio.wait_for(job, LOAD_SLACK)
        await broker.close()

        async def closed() -> bool:  # the held connection too, abandoned or not
            return not [c for c in r.client_list() if c["name"] == name]

        await wait_until(closed, LOAD_SLACK, f"the connection of a stop after {steps} steps")
