"""Claims tasks while the executor has free slots; sleeps on Redis while the queues are empty."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.ops import Op
from conveyor.broker.records import Claim, ClaimedTask
from conveyor.errors import BrokerUnavailableError
from conveyor.worker.executor import Executor
from conveyor.worker.leases import Leases
from conveyor.worker.loop import outage_backoff, sleep_or_stop
from conveyor.worker.outage import Outage
from conveyor.worker.selection import QueueSelection

log = logging.getLogger("conveyor.worker")

#: Longest idle block on the signal list; bounds how long a missed wake-up could last.
IDLE_WAIT = 1.0


class Fetcher:
    """Leases up to `batch` tasks per round trip, never more than there are free slots."""

    def __init__(
        self,
        broker: AsyncBroker,
        executor: Executor,
        leases: Leases,
        queues: QueueSelection,
        worker_id: str,
        *,
        outage: Outage | None = None,
        on_deferred: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        #: called when a claim put tasks over their rate limit in `scheduled`
        self.on_deferred = on_deferred
        self.outage = outage or Outage(connected=True)
        self.executor = executor
        self.leases = leases
        self.queues = queues
        self.worker_id = worker_id
        self.batch = broker.settings.claim_batch
        self._rng = random.Random()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and start tasks until `stop` is set."""
        failures = 0
        while not stop.is_set():
            # with a slot free (the common case) claim at once, without the wait's tasks
            if self.executor.free_slots <= 0 and not await _first(
                self.executor.wait_for_slot(), stop
            ):
                break
            if stop.is_set():  # the slot may free in the same loop step that stop() was called
                break
            started = time.monotonic()
            try:
                claimed = await self.claim()
                self.outage.reached(started)
                if not claimed:
                    await _first(self.wait_and_claim(), stop)
                failures = 0
            except BrokerUnavailableError as exc:
                failures += 1
                self.outage.failed("fetcher", exc)
                await sleep_or_stop(stop, outage_backoff(failures))
            except Exception:  # e.g. a script error: keep fetching, never take the worker down
                failures += 1
                wait = outage_backoff(failures)
                log.exception("fetcher failed; retrying in %.1fs", wait)
                await sleep_or_stop(stop, wait)

    async def claim(self) -> list[ClaimedTask]:
        """Claim from the first queue, in selection order, that has tasks; start them.

        A queue that skipped a suspect (it only goes to an idle worker) makes the
        executor take nothing new until idle, so the suspect is claimed next round.
        """
        suspects_waiting = False
        try:
            for queue in self.queues.order(self._rng):
                claim = await self.broker.run(self._claim_op(queue))
                suspects_waiting |= claim.suspects_waiting
                self._deferred(claim)
                if claim.tasks:
                    return self._start(claim.tasks)
            return []
        finally:
            self.executor.wants_suspect = suspects_waiting

    async def wait_and_claim(self) -> None:
        """Sleep on Redis until work arrives, then claim it.

        With one queue the claim rides behind the wait, pipelined: Redis runs it as soon as
        the wait ends, and a woken worker starts its task one round trip earlier.
        """
        names = self.queues.served
        if len(names) > 1 or self.executor.free_slots <= 0:  # none when awaiting a suspect
            await self.broker.wait_for_work(names, IDLE_WAIT)
            return
        claim = await self.broker.wait_then_run(names[0], IDLE_WAIT, self._claim_op(names[0]))
        if claim is not None:
            self.executor.wants_suspect = claim.suspects_waiting
            self._deferred(claim)
            self._start(claim.tasks)

    def _claim_op(self, queue: str) -> Op[Claim]:
        want = min(self.batch, self.executor.free_slots)
        return self.broker.ops.claim(queue, want, self.worker_id, idle=self.executor.idle)

    def _deferred(self, claim: Claim) -> None:
        if claim.deferred_until_ms is not None and self.on_deferred is not None:
            self.on_deferred()

    def _start(self, tasks: list[ClaimedTask]) -> list[ClaimedTask]:
        for task in tasks:
            self.leases.add(task)
            self.executor.start(task)
        return tasks


async def _first(work: Coroutine[Any, Any, Any], stop: asyncio.Event) -> bool:
    """Await `work` unless `stop` is set first (then cancel it); True if `work` finished."""
    job = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({job, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if job.done():
        job.result()  # re-raise its error
        return True
    job.cancel()
    await asyncio.wait({job})
    if not job.cancelled():
        job.exception()  # retrieved, so asyncio does not warn about it
    return False
