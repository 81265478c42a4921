"""Keeps one connection of this worker open in Redis for as long as the process lives.

The reaper takes a worker's tasks back once none of its connections is left in Redis:
the kernel closes them all when the process dies, however it dies (SIGKILL, the OOM
killer, a segfault). A live worker busy with long tasks may send nothing for a whole
heartbeat, and its pooled connections may have been dropped meanwhile (by a proxy, or a
Redis `timeout`): this one connection, blocked on a list nobody pushes to, costs nothing
while it is open, and the moment it is dropped its wait fails and it is opened again.
"""

from __future__ import annotations

import asyncio

from conveyor.broker.async_broker import AsyncBroker
from conveyor.errors import BrokerUnavailableError
from conveyor.worker.loop import outage_backoff, sleep_or_stop

#: How long one wait lasts before it is renewed.
HOLD = 30.0
#: Longest pause between reconnections: a live worker whose connections were dropped must
#: be back well within the reaper's `ABSENCE`, even after a long outage.
RECONNECT_BACKOFF = 0.25
#: Seconds between two cancels of a wait that a stop ends (a cancel may be lost, see below).
RECANCEL = 0.05


class Presence:
    """Holds the worker's presence connection until `stop` is set."""

    def __init__(self, broker: AsyncBroker, worker_id: str) -> None:
        self.broker = broker
        self.worker_id = worker_id

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the connection, reopening it whenever it is dropped, until `stop`.

        Failures are not logged: the components that need Redis report an outage.
        """
        failures = 0
        while not stop.is_set():
            try:
                await self._hold(stop)
                failures = 0
            except BrokerUnavailableError:
                failures += 1
                await sleep_or_stop(stop, outage_backoff(failures, RECONNECT_BACKOFF))

    async def _hold(self, stop: asyncio.Event) -> None:
        """One wait, cut short by `stop`."""
        waiting = asyncio.ensure_future(self.broker.hold_presence(self.worker_id, HOLD))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            # Python 3.11's wait_for, under which redis-py connects and sends, drops a
            # cancel that lands as either completes (gh-86296): the wait would run out its
            # whole HOLD and hold up the worker's stop, so the cancel is repeated until taken
            while not waiting.done():
                waiting.cancel()
                await asyncio.wait({waiting}, timeout=RECANCEL)
        if not waiting.cancelled():
            waiting.result()
