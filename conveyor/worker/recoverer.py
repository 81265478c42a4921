"""Returns tasks of dead or stalled workers to pending, and trims the dead-letter queues."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.ops import MAINTENANCE_BATCH, combine
from conveyor.worker.loop import periodically
from conveyor.worker.outage import Outage

log = logging.getLogger("conveyor.worker")
#: Told the ids of tasks a script dead-lettered (see WorkflowStepper.dead_lettered).
OnDead = Callable[[list[str]], Awaitable[None]]


class Recoverer:
    """Runs in every worker; the scripts make concurrent runs safe (each lease recovered once)."""

    def __init__(
        self,
        broker: AsyncBroker,
        queues: tuple[str, ...],
        *,
        outage: Outage | None = None,
        on_dead: OnDead | None = None,
    ) -> None:
        self.broker = broker
        #: told the ids of the tasks a sweep dead-lettered (their workflows fail them)
        self.on_dead = on_dead
        self.queues = queues
        self.outage = outage
        self.interval = broker.settings.lease_timeout / 2

    async def run(self, stop: asyncio.Event) -> None:
        """Recover and trim until `stop` is set."""
        await periodically("recoverer", self.sweep, stop, log, self.outage)

    async def sweep(self) -> float:
        """One pass over every queue; returns the seconds until the next."""
        ops = self.broker.ops
        batch = [ops.recover(q) for q in self.queues] + [ops.trim_dead(q) for q in self.queues]
        results = await self.broker.run(combine(batch))
        full = False
        buried = []
        for outcomes in results[: len(self.queues)]:
            full |= len(outcomes) >= MAINTENANCE_BATCH
            for task_id, outcome in outcomes:
                if outcome == "dead":
                    log.error("task %s: its worker was lost too often; dead-lettered", task_id)
                    buried.append(task_id)
                elif outcome == "pending":
                    log.warning("task %s: lease expired; returned to pending", task_id)
                elif outcome == "cancelled":
                    log.info("task %s: its worker was lost while cancelling it; cancelled", task_id)
        if buried and self.on_dead is not None:
            await self.on_dead(buried)
        for dropped in results[len(self.queues) :]:
            if dropped:
                log.info("dropped %d dead letters past the age or size limit", dropped)
        # a jittered period keeps many workers from sweeping in lockstep
        return 0.0 if full else self.interval * random.uniform(0.8, 1.2)
