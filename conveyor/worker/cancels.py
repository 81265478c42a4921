"""Hears that a running task was cancelled, and tells the executor to stop it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from conveyor.broker.async_broker import AsyncBroker
from conveyor.worker.loop import periodically
from conveyor.worker.outage import Outage

log = logging.getLogger("conveyor.worker")

#: Seconds one wait for a message lasts (a stop cuts it short).
POLL = 5.0


class CancelListener:
    """Listens to the cancel channels of the worker's queues (cancel.lua publishes the id
    of a running task there) and hands each id to `on_cancel`, which ignores tasks it does
    not run.

    Pub/sub delivers at most once: a message sent while this connection is down is lost.
    The heartbeat's lease renewal names every held task that is being cancelled too, so a
    lost message delays the stop by one beat at most.
    """

    def __init__(
        self,
        broker: AsyncBroker,
        queues: Sequence[str],
        on_cancel: Callable[[str], None],
        *,
        outage: Outage | None = None,
    ) -> None:
        self.broker = broker
        self.channels = [broker.ops.queue_keys(q).cancels for q in queues]
        self.on_cancel = on_cancel
        self.outage = outage

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop`; reconnect (with backoff) when the connection fails."""
        await periodically("cancel listener", lambda: self.listen(stop), stop, log, self.outage)

    async def listen(self, stop: asyncio.Event) -> float:
        """One subscription, held until `stop` (which ends a wait at once: the worker's
        shutdown never waits for this loop)."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            async with self.broker.subscribed(self.channels) as receive:
                while not stop.is_set():
                    receiving = asyncio.ensure_future(receive(POLL))
                    await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not receiving.done():
                        receiving.cancel()  # the connection closes: a half-read is harmless
                        await asyncio.wait({receiving})
                        break
                    task_id = receiving.result()
                    if task_id is not None:
                        self.on_cancel(task_id.decode())
        finally:
            stopping.cancel()
        return 0.0
