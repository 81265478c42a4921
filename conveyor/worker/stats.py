"""Adds this worker's outcome counts and latencies to the shared history in Redis, about
once a second (see broker/timeseries.py): the dashboard's charts read it."""

from __future__ import annotations

import asyncio
import logging
import time

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.timeseries import Tally, flush_calls
from conveyor.errors import ConveyorError
from conveyor.worker.loop import periodically

log = logging.getLogger("conveyor.worker")

#: Seconds between two writes of the tally.
FLUSH_INTERVAL = 1.0


class StatsWriter:
    """Counts in memory on the hot path; writes the counts in one pipeline per interval.

    A write that fails (Redis away) is merged back and tried again with the next, so an
    outage delays the history without losing it; a crash loses at most one interval. A
    connection lost halfway through a write may count part of it twice: these are
    statistics for charts, not a ledger.
    """

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker
        self.tally = Tally()

    def outcome(self, queue: str, task: str, outcome: str) -> None:
        """An attempt ended with `outcome` (succeeded, failed, retried or dead)."""
        self.tally.outcome(time.time(), queue, task, outcome)

    def latency(self, queue: str, kind: str, seconds: float) -> None:
        """A `run` (handler) or `wait` (ready to claimed) latency."""
        self.tally.latency(time.time(), queue, kind, seconds)

    async def run(self, stop: asyncio.Event) -> None:
        """Write every interval until `stop`, then once more."""
        await periodically("stats", self.flush, stop, log)
        await self.flush()

    async def flush(self) -> float:
        """Write what was counted; returns the seconds until the next write."""
        taken = self.tally.take()
        if taken:
            try:
                await self.broker.execute(flush_calls(self.broker.ops.keys, taken))
            except ConveyorError as exc:
                log.debug("stats not written yet: %s", exc)
                self.tally.give_back(taken)
        return FLUSH_INTERVAL
