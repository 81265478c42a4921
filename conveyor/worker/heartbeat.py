"""Renews this worker's leases and its registration, in one round trip per beat."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from conveyor import serializers
from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.ops import Op, Renewal, combine
from conveyor.errors import ConveyorError
from conveyor.worker.leases import Leases
from conveyor.worker.loop import periodically
from conveyor.worker.outage import Outage

log = logging.getLogger("conveyor.worker")


class Heartbeat:
    """Every `lease_timeout / 3`: extend every held lease, refresh the worker's record.

    It runs until the very end of shutdown, so leases of draining tasks stay alive.
    """

    def __init__(
        self,
        broker: AsyncBroker,
        leases: Leases,
        worker_id: str,
        describe: Callable[[], dict[str, Any]],
        *,
        outage: Outage | None = None,
        on_cancel: Callable[[str], None] = lambda task_id: None,
    ) -> None:
        self.broker = broker
        #: told the id of each held task that is being cancelled, at every beat
        self.on_cancel = on_cancel
        self.outage = outage
        self.leases = leases
        self.worker_id = worker_id
        #: the worker's description, taken anew at each beat (tasks in flight, processed)
        self.describe = describe
        self.interval = broker.settings.heartbeat_interval
        #: whether the last beat refreshed the registration (False while Redis is full)
        self.registered = True

    async def run(self, stop: asyncio.Event) -> None:
        """Beat until `stop`, then remove this worker from the registry (best effort)."""
        await periodically("heartbeat", self.beat, stop, log, self.outage)
        try:
            await self.broker.run(self.broker.ops.deregister_worker(self.worker_id))
        except ConveyorError as exc:
            log.warning("could not deregister worker %s: %s", self.worker_id, exc)

    async def beat(self) -> float:
        """One renewal round trip; returns the seconds until the next. A renewal also
        names the tasks being cancelled: the fallback of a lost cancel message."""
        ops = self.broker.ops
        groups = self.leases.by_queue()
        batch: list[Op[Any]] = [ops.extend_leases(q, held) for q, held in groups.items()]
        batch.append(
            ops.register_worker(
                self.worker_id, serializers.dumps(self.describe()), int(time.time() * 1000)
            )
        )
        results = await self.broker.run(combine(batch))
        renewals: list[Renewal] = results[:-1]
        for renewal in renewals:
            for task_id in renewal.lost:
                task = self.leases.get(task_id)
                if task is not None:
                    log.warning("lease of task %s was lost; another worker may run it", task_id)
                    self.leases.release(task)
            for task_id in renewal.cancelling:
                self.on_cancel(task_id)
        self._note_registration(registered=results[-1])
        return self.interval

    def _note_registration(self, *, registered: bool) -> None:
        """Log when Redis starts and stops refusing the registration for lack of memory.

        The beat keeps its interval meanwhile: the leases are renewed all the same (a
        renewal does not grow memory, and Redis lets it through), and the registration
        is retried at every beat.
        """
        if registered == self.registered:
            return
        self.registered = registered
        if registered:
            log.info("heartbeat: Redis accepts the worker's registration again")
        else:
            log.warning(
                "heartbeat: Redis is full (maxmemory) and refuses to refresh the worker's "
                "registration; leases are still renewed, the registration is retried every "
                "%.1fs",
                self.interval,
            )
