"""Takes the tasks of a dead worker back within about a second, instead of a lease.

Shorter leases would recover faster, but turn every handler that stalls into a duplicate.
The reaper tells a dead process from a slow one instead: every connection of a worker
carries its id (CLIENT SETNAME), and the kernel closes them all when the process dies,
while a stopped (SIGSTOP) or GIL-bound process keeps them open. A worker registered in
Redis with no connection left, for `ABSENCE` seconds in a row and with no heartbeat
meanwhile, is dead: its leases are taken back at once (a crash counted, as for a lease
that ran out). The fencing token keeps this safe if it was alive after all.

One worker at a time is the reaper (a role renewed in Redis), so Redis lists its clients
for one worker, not for all. Right after Redis restarted, or another Redis took over
(Sentinel), every connection is new and workers are still reconnecting: the reaper
waits `RESTART_GRACE` before it trusts what it sees. Where CLIENT LIST is forbidden (an
ACL), the reaper stands down and leases run out as before.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.keys import worker_of_connection
from conveyor.broker.ops import Survey
from conveyor.broker.transport import ReplyError
from conveyor.errors import ConveyorError
from conveyor.worker.loop import periodically
from conveyor.worker.outage import Outage
from conveyor.worker.recoverer import OnDead

log = logging.getLogger("conveyor.worker")

#: Seconds between two surveys of the reaper.
SURVEY_INTERVAL = 0.25
#: Seconds between two tries of the other workers to take the role: when the reaper itself
#: dies, its role lapses after ROLE_TTL and the next worker takes it within this.
FOLLOW_INTERVAL = 0.25
#: The role lapses this long after its holder stopped renewing it.
ROLE_TTL = 1.0
#: Seconds a worker must be seen with no connection before it is declared dead: longer
#: than a live worker takes to reopen its presence connection after a drop.
ABSENCE = 0.75
#: Seconds after a Redis restart or failover during which nobody is declared dead.
RESTART_GRACE = 10.0
#: Seconds before a reaper refused CLIENT LIST tries again.
STAND_DOWN = 300.0
#: Two surveys further apart than this do not make a continuous observation.
MAX_SURVEY_GAP = 4 * SURVEY_INTERVAL


@dataclass(slots=True)
class _Absence:
    since: float  # monotonic time of the first survey that found no connection
    beat: float  # the worker's heartbeat then


class Reaper:
    """Surveys the workers while it has the role; runs in every worker."""

    def __init__(
        self,
        broker: AsyncBroker,
        worker_id: str,
        *,
        restart_grace: float = RESTART_GRACE,
        outage: Outage | None = None,
        on_dead: OnDead | None = None,
    ) -> None:
        self.broker = broker
        #: told the ids of the tasks it dead-lettered (their workflows fail them)
        self.on_dead = on_dead
        self.outage = outage
        self.worker_id = worker_id
        self.restart_grace = restart_grace
        #: surveys done, and workers declared dead (read by tests and the soak)
        self.surveys = 0
        self.reaped = 0
        self._absent: dict[str, _Absence] = {}
        self._server = ""
        self._quiet_until = 0.0
        self._last_survey = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Take the role when free, and survey while holding it, until `stop`; then give
        the role up, so another worker takes it at once."""
        await periodically("reaper", self.step, stop, log, self.outage)
        try:
            await self.broker.run(self.broker.ops.lead(self.worker_id, 0))
        except ConveyorError as exc:
            log.debug("could not give up the reaper's role: %s", exc)

    async def step(self) -> float:
        """One try for the role and, holding it, one survey; returns the seconds to wait."""
        ops = self.broker.ops
        if not await self.broker.run(ops.lead(self.worker_id, ROLE_TTL)):
            self._absent.clear()
            return FOLLOW_INTERVAL * random.uniform(0.8, 1.2)
        try:
            survey = await self.broker.run(ops.survey())
        except ReplyError as exc:  # CLIENT or INFO refused (an ACL): leases still run out
            log.warning("cannot survey the workers, their leases will run out: %s", exc)
            return STAND_DOWN
        dead = self.judge(survey, time.monotonic())
        if dead:
            await self.take_back(dead)
        return SURVEY_INTERVAL

    def judge(self, survey: Survey, now: float) -> list[str]:
        """The workers this survey proves dead, given the surveys before it."""
        self.surveys += 1
        if now - self._last_survey > MAX_SURVEY_GAP:
            self._absent.clear()  # not a continuous watch: start over
        self._last_survey = now
        if survey.server_id != self._server:
            if self._server:  # every connection is new, and workers are reconnecting
                self._quiet_until = now + self.restart_grace
            self._server = survey.server_id
            self._absent.clear()
        if now < self._quiet_until or survey.uptime < self.restart_grace:
            return []
        present = {worker_of_connection(name) for name in survey.connections}
        dead = []
        for worker_id, beat in survey.beats.items():
            if worker_id in present or worker_id == self.worker_id:
                self._absent.pop(worker_id, None)
                continue
            absence = self._absent.get(worker_id)
            if absence is None or absence.beat != beat:
                self._absent[worker_id] = _Absence(now, beat)
            elif now - absence.since >= ABSENCE:
                dead.append(worker_id)
        for gone in self._absent.keys() - survey.beats.keys():
            del self._absent[gone]
        return dead

    async def take_back(self, dead: list[str]) -> None:
        """Forget the dead workers and return every task they leased."""
        ops = self.broker.ops
        queues_of = await self.broker.run(ops.worker_queues(dead))
        for worker_id in dead:
            outcomes: Counter[str] = Counter()
            for queue in queues_of.get(worker_id, []):
                start = 0
                while start >= 0:
                    start, released = await self.broker.run(
                        ops.release_worker(queue, worker_id, start)
                    )
                    outcomes.update(outcome for _, outcome in released)
                    buried = [task_id for task_id, outcome in released if outcome == "dead"]
                    if buried and self.on_dead is not None:
                        await self.on_dead(buried)
            await self.broker.run(ops.deregister_worker(worker_id))
            self._absent.pop(worker_id, None)
            self.reaped += 1
            log.warning(
                "worker %s is gone (none of its connections is left): %d of its tasks "
                "back to pending, %d dead after losing too many workers",
                worker_id, outcomes["pending"], outcomes["dead"],
            )  # fmt: skip
