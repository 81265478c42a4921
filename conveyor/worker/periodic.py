"""Fires periodic schedules: every worker runs one, and no beat process is needed.

Each step reads the schedules whose next tick has come, enqueues their ticks through the
app's producer, each under the idempotency key of (schedule, tick), and only then moves
each schedule's cursor with a check-and-set (advance_schedule.lua). So a tick is enqueued
exactly once however many workers fire it: two workers firing together store one task
(the key), and a worker that dies between the enqueue and the check-and-set leaves the
cursor behind for the next worker, whose enqueue of the same tick is deduplicated.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.ops import combine
from conveyor.broker.schedules import Due, DueRead, ScheduleAdmin
from conveyor.broker.steps import drive_async
from conveyor.model import to_millis
from conveyor.schedule import Schedule
from conveyor.schedules import schedule_message
from conveyor.worker.firing import MISFIRE_GRACE_MS, Plan, plan
from conveyor.worker.loop import periodically
from conveyor.worker.outage import Outage

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.worker")

#: Longest sleep between looks at the schedules, so one upserted or resumed elsewhere
#: is seen soon.
MAX_SLEEP = 1.0
#: How often a worker upserts the code's schedules again: it restores them after Redis
#: lost its data, undoes changes made to them from outside the code, and keeps their
#: `declared_at` fresh (a stale one says no running code declares the schedule any more).
REDECLARE_EVERY = 60.0
#: Each worker wakes up to this much after a tick is due (its own random offset), so the
#: first one awake fires it and the others mostly find it done.
MAX_OFFSET = 0.1


class Periodic:
    """Declares the app's `@app.periodic` schedules when it starts (and every
    REDECLARE_EVERY seconds after), and fires due ticks.

    Args:
        app: whose producer enqueues the ticks, and whose settings give the idempotency
            window (no tick older than it is fired: its key could no longer dedupe it).
        broker: the worker's broker.
        declared: the schedules the code declares (upserted with origin "code").
    """

    def __init__(
        self,
        app: Conveyor,
        broker: AsyncBroker,
        declared: Sequence[Schedule] = (),
        *,
        outage: Outage | None = None,
        offset: float | None = None,
        redeclare_every: float = REDECLARE_EVERY,
    ) -> None:
        self.app = app
        self.broker = broker
        self.admin = ScheduleAdmin(broker.ops)
        self.declared = list(declared)
        self.outage = outage
        self.window_ms = to_millis(app.settings.idempotency_window)
        self.offset = random.uniform(0, MAX_OFFSET) if offset is None else offset
        self.redeclare_every = redeclare_every
        self._declared_at: float | None = None  # monotonic
        self._reported: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Fire schedules until `stop` is set."""
        await periodically("periodic", self.step, stop, log, self.outage)

    async def declare(self) -> None:
        """Upsert the code's schedules (an unchanged one is left as it is)."""
        for schedule in self.declared:
            result = await drive_async(self.admin.upsert(schedule, "code"), self.broker.run)
            if result != "unchanged":
                log.info("schedule %s %s: %s", schedule.id, result, schedule.timing.describe())
        self._declared_at = time.monotonic()

    async def step(self) -> float:
        """One look at the schedules; returns the seconds until the next."""
        last = self._declared_at
        if self.declared and (last is None or time.monotonic() - last >= self.redeclare_every):
            await self.declare()
        read = await drive_async(self.admin.due(), self.broker.run)
        if read.gone:
            await self.broker.run(combine([self.admin.forget(i) for i in read.gone]))
        self._report(read.corrupt)
        if read.due and await self.fire(read):
            return 0.0  # the index moved: look again at once
        if read.next_due is None or read.next_due <= read.now:
            return MAX_SLEEP
        return min(MAX_SLEEP, (read.next_due - read.now) / 1000 + self.offset)

    async def fire(self, read: DueRead) -> bool:
        """Enqueue the ticks of the due schedules, then advance their cursors; whether any
        cursor was advanced or found moved."""
        plans = [
            (due, plan(due.schedule, due.cursor, read.now, self.window_ms)) for due in read.due
        ]
        tasks = self.app.tasks
        messages = [
            schedule_message(due.schedule, tasks, tick) for due, p in plans for tick in p.ticks
        ]
        handles = await self.app.enqueue_many_async(messages) if messages else []
        ids = iter(handles)
        advances = []
        for due, p in plans:
            mine = [next(ids) for _ in p.ticks]
            last_id = mine[-1].id if mine else ""
            last = p.ticks[-1] if p.ticks else None
            advances.append(self.admin.advance(due, p.cursor, p.next_due, len(mine), last, last_id))
            _log_firing(due, p, read.now, sum(not h.replayed for h in mine))
        results = await self.broker.run(combine(advances))
        return any(result >= 0 for result in results)

    def _report(self, corrupt: list[str]) -> None:
        for schedule_id in set(corrupt) - self._reported:
            log.error("schedule %s cannot be decoded; it is not fired (see conveyor fsck)",
                      schedule_id)  # fmt: skip
            self._reported.add(schedule_id)


def _log_firing(due: Due, fired: Plan, now: int, stored: int) -> None:
    late = [tick for tick in fired.ticks if now - tick > MISFIRE_GRACE_MS]
    if late:
        log.info("schedule %s: %d late tick(s) fired (misfire=%s)",
                 due.schedule.id, len(late), due.schedule.misfire)  # fmt: skip
    if stored < len(fired.ticks):  # another worker enqueued them first, or a dead one did
        log.debug("schedule %s: %d tick(s) deduplicated", due.schedule.id,
                  len(fired.ticks) - stored)  # fmt: skip
    log.debug("schedule %s: ticks %s fired, %d new task(s)", due.schedule.id, fired.ticks, stored)
