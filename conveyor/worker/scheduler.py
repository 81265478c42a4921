"""Promotes delayed tasks and waiting retries to pending when they fall due."""

from __future__ import annotations

import asyncio
import logging

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.ops import MAINTENANCE_BATCH, combine
from conveyor.worker.loop import periodically
from conveyor.worker.outage import Outage

log = logging.getLogger("conveyor.worker")

#: Longest sleep between checks, so a newly scheduled earlier task is not missed long.
MAX_SLEEP = 0.5


class Scheduler:
    """Sleeps until the next due task (at most MAX_SLEEP); every worker runs one, and the
    promote script's atomic ZREM makes sure each task is promoted exactly once."""

    def __init__(
        self, broker: AsyncBroker, queues: tuple[str, ...], *, outage: Outage | None = None
    ) -> None:
        self.broker = broker
        self.queues = queues
        self.outage = outage
        self._nudged = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Promote until `stop` is set."""
        await periodically("scheduler", self.promote, stop, log, self.outage, self._nudged)

    def nudge(self) -> None:
        """Look again now: a claim put a task over its rate limit in `scheduled`, due
        sooner than this scheduler may otherwise look (the pass after finds when)."""
        self._nudged.set()

    async def promote(self) -> float:
        """One pass; returns the seconds until the next."""
        ops = self.broker.ops
        results = await self.broker.run(combine([ops.promote_due(q) for q in self.queues]))
        if any(promoted >= MAINTENANCE_BATCH for promoted, _ in results):
            return 0.0
        waits = [wait for _, wait in results if wait is not None]
        return float(min([MAX_SLEEP, *waits]))
