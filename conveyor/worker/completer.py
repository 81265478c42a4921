"""Writes task outcomes to Redis in batches: one pipeline per burst of completions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.records import ClaimedTask
from conveyor.broker.scripts import Call
from conveyor.errors import BrokerUnavailableError
from conveyor.worker.leases import Leases
from conveyor.worker.loop import outage_backoff

log = logging.getLogger("conveyor.worker")

#: Most completions written per round trip.
BATCH = 500
OnWritten = Callable[[Any], None]


class Completer:
    """Queue of outcome scripts (ack, retry, dead letter, requeue) flushed in pipelines.

    Batching comes free: while one pipeline is in flight, new outcomes queue up and go
    together in the next, so an idle worker acks at once and a busy one amortizes.
    """

    def __init__(self, broker: AsyncBroker, leases: Leases) -> None:
        self.broker = broker
        self.leases = leases
        self._queue: asyncio.Queue[tuple[ClaimedTask, Call, OnWritten | None]] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(self, task: ClaimedTask, call: Call, on_written: OnWritten | None = None) -> None:
        """Queue an outcome; its lease is released once the outcome is written."""
        self._idle.clear()
        self._queue.put_nowait((task, call, on_written))

    async def run(self, stop: asyncio.Event) -> None:
        """Write outcomes until `stop` is set and everything queued is written.

        While Redis is down it keeps retrying; the worker cancels it if shutdown cannot
        wait (the leases then expire and the tasks run again: at-least-once).
        """
        failures = 0
        while not (stop.is_set() and self._queue.empty()):
            batch = await self._next_batch(stop)
            while batch:
                try:
                    calls = [call for _, call, _ in batch]
                    replies = await self.broker.execute(calls, raise_errors=False)
                except BrokerUnavailableError as exc:
                    failures += 1
                    wait = outage_backoff(failures)
                    log.warning(
                        "cannot write %d outcomes: %s; retrying in %.1fs", len(batch), exc, wait
                    )
                    await asyncio.sleep(wait)
                    continue
                failures = 0
                for (task, _, on_written), reply in zip(batch, replies, strict=True):
                    self.leases.release(task)
                    if isinstance(reply, Exception):  # its lease expires: it runs again
                        log.error("cannot write the outcome of task %s: %s", task.id, reply)
                    elif on_written is not None:
                        on_written(reply)
                batch = []
            if self._queue.empty():
                self._idle.set()

    async def _next_batch(
        self, stop: asyncio.Event
    ) -> list[tuple[ClaimedTask, Call, OnWritten | None]]:
        if self._queue.empty():
            getter = asyncio.ensure_future(self._queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if not getter.done():
                getter.cancel()
                return []
            batch = [getter.result()]
        else:
            batch = []
        while not self._queue.empty() and len(batch) < BATCH:
            batch.append(self._queue.get_nowait())
        return batch

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued outcome is written; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        try:
            await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return False
        return True
