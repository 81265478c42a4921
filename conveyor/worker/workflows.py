"""Advances the workflow of a task that ended, before the task's own outcome is written.

Order is what makes it crash-safe: step (workflow_step.lua), enqueue the nodes it returns
under their idempotency keys, and only then ack (or dead-letter). A worker that dies
anywhere in between leaves the task leased: it runs again, its step repeats (writing
nothing, returning the same nodes) and the enqueue replays, so no node starts twice and
none is lost.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from conveyor import serializers
from conveyor.broker.admin import Admin
from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.ops import raw
from conveyor.broker.records import ClaimedTask
from conveyor.broker.steps import drive_async
from conveyor.broker.workflows import WorkflowOps, advance, error_description, node_of
from conveyor.errors import BrokerUnavailableError
from conveyor.model import TaskRecord, to_millis
from conveyor.worker.loop import outage_backoff, periodically
from conveyor.worker.outage import Outage

log = logging.getLogger("conveyor.worker")


class WorkflowStepper:
    """Runs a workflow task's step and starts what follows; retries while Redis is away."""

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker
        self.workflows = WorkflowOps(broker.ops)
        self._later: set[asyncio.Task[None]] = set()  # strong references

    def requeued(self, task: ClaimedTask) -> Callable[[Any], None]:
        """The callback of a crashed task's requeue: when it dead-lettered the task (its
        process died too often), the task's node fails, in the background."""

        def written(reply: Any) -> None:
            if task.workflow is not None and reply in (b"dead", "dead"):
                job = asyncio.get_running_loop().create_task(self.dead_lettered([task.id]))
                self._later.add(job)
                job.add_done_callback(self._later.discard)

        return written

    async def succeeded(self, task: ClaimedTask, result: bytes) -> None:
        """Record `task`'s result in its workflow and start what it sets going."""
        if task.workflow is not None:
            await self._advance(task.workflow, "succeeded", result, task.id)

    async def failed(self, task: ClaimedTask, state: str, error: bytes) -> None:
        """Record that `task` ended `state` (dead, failed) with `error` (JSON)."""
        if task.workflow is not None:
            description = error_description(node_of(task.workflow), task.id, state, error)
            await self._advance(task.workflow, "failed", description, task.id)

    async def dead_lettered(self, task_ids: list[str]) -> None:
        """Tasks a script dead-lettered, not a handler (a poison pill: their workers kept
        dying): those of workflows fail their nodes. A repeat of this is harmless."""
        if task_ids:
            records = await drive_async(Admin(self.broker.ops).records(task_ids), self.broker.run)
            await self.ended_elsewhere(records)

    async def ended_elsewhere(self, records: Iterable[TaskRecord | None]) -> None:
        """The failure of these tasks, ended outside a handler, reaches their workflows."""
        for record in records:
            if record is not None and record.workflow and record.state in ("dead", "failed"):
                error = serializers.dumps(record.error or {})
                description = error_description(
                    node_of(record.workflow), record.id, str(record.state), error
                )
                await self._advance(record.workflow, "failed", description, record.id)

    async def _advance(self, field: str, outcome: str, payload: bytes, task_id: str) -> None:
        failures = 0
        while True:
            steps = advance(self.workflows, field, outcome, payload, task_id)
            try:
                await drive_async(steps, self.broker.run)
                return
            except BrokerUnavailableError as exc:
                failures += 1
                log.debug("workflow step of task %s waits for Redis: %s", task_id, exc)
                await asyncio.sleep(outage_backoff(failures))
            except Exception:  # a corrupt workflow must not keep the task's lease forever
                log.exception("task %s: its workflow (%s) cannot advance", task_id, field)
                return


#: A workflow still launching this long after it was stored has lost its producer.
STRANDED_AFTER = 30.0
#: Seconds between two looks for stranded workflows (jittered).
LOOK_EVERY = 10.0
#: Most stranded workflows one look launches.
LOOK_BATCH = 100


class Relauncher:
    """Launches the workflows whose producer died between storing one and enqueuing its
    first tasks (they stay listed as launching, see WorkflowOps.create). Every worker runs
    one; two launching the same workflow at once is harmless: the begin step writes
    nothing twice, and the enqueue replays its tasks' idempotency keys.
    """

    def __init__(
        self,
        broker: AsyncBroker,
        *,
        outage: Outage | None = None,
        stranded_after: float = STRANDED_AFTER,
    ) -> None:
        self.broker = broker
        self.workflows = WorkflowOps(broker.ops)
        self.outage = outage
        self.stranded_after = stranded_after

    async def run(self, stop: asyncio.Event) -> None:
        """Look for stranded workflows until `stop` is set."""
        await periodically("workflows", self.look, stop, log, self.outage)

    async def look(self) -> float:
        """Launch the stranded workflows; returns the seconds until the next look."""
        now = time.time()
        before = to_millis(now - self.stranded_after)
        stranded = await self.broker.run(self.workflows.stranded(before, LOOK_BATCH))
        # past the idempotency window, an enqueue the producer did make would not replay:
        # launching could start its first tasks twice
        window = self.broker.settings.idempotency_window
        for workflow_id, stored_ms in stranded:
            if now - stored_ms / 1000 >= window:
                log.error(
                    "workflow %s was stored but not started by its producer, longer ago than "
                    "the idempotency window: not started now (its first tasks may run already)",
                    workflow_id,
                )
                await self.broker.run(raw(self.workflows.launched(workflow_id)))
            elif await drive_async(self.workflows.relaunch(workflow_id), self.broker.run):
                log.warning(
                    "workflow %s: its producer stopped before starting it; started", workflow_id
                )
        return 0.0 if len(stranded) >= LOOK_BATCH else LOOK_EVERY * random.uniform(0.8, 1.2)
