"""Producing workflows: store and begin one, and follow it to its end (`WorkflowHandle`).

Each procedure is written once as `Steps` (see broker/steps.py) and driven by a sync or an
async broker.
"""

from __future__ import annotations

import time
from typing import Any

from conveyor.broker.events import MAX_PAGE, RECHECK_EVERY, latest, read_events
from conveyor.broker.ops import Op, Operations
from conveyor.broker.steps import Steps, drive, drive_async
from conveyor.broker.workflows import Outcome, Step, WorkflowOps, WorkflowView, launch
from conveyor.canvas import FAILURE_POLICIES, FailurePolicy, Workflow, compile_workflow
from conveyor.errors import (
    ConfigurationError,
    ResultTimeoutError,
    WorkflowFailedError,
    WorkflowNotFoundError,
)
from conveyor.events import Event
from conveyor.ids import is_task_id, new_ulid, queue_of
from conveyor.model import to_millis
from conveyor.options import DEFAULT_QUEUE
from conveyor.producer import Producer


def workflow_ops(producer: Producer) -> WorkflowOps:
    """The workflow operations on the producer's keyspace (no connection needed)."""
    return WorkflowOps(Operations(producer.settings))


def begin(
    producer: Producer, workflow: Workflow, on_failure: FailurePolicy = "stop"
) -> tuple[str, Steps[Op[Any], Step]]:
    """A new workflow's id, and the procedure that stores it and starts its first tasks."""
    if on_failure not in FAILURE_POLICIES:
        raise ConfigurationError(
            f"on_failure must be one of {FAILURE_POLICIES}, not {on_failure!r}"
        )
    nodes = compile_workflow(workflow)
    shapes = [(n.id, n.shape()) for n in nodes]
    specs = [(n.id, n.spec) for n in nodes if n.spec is not None]
    workflow_id = new_ulid()

    def procedure() -> Steps[Op[Any], Step]:
        workflows = workflow_ops(producer)
        now = to_millis(time.time())
        step = yield workflows.create(workflow_id, shapes, specs, on_failure, now)
        launched = [workflows.launched(workflow_id)]
        return (yield from launch(workflows, workflow_id, step, then=launched))

    return workflow_id, procedure()


class WorkflowHandle:
    """A reference to an enqueued workflow: its id, its state, its result."""

    __slots__ = ("id", "producer")

    def __init__(self, producer: Producer, workflow_id: str) -> None:
        self.producer = producer
        self.id = workflow_id

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id}>"

    def view(self) -> WorkflowView | None:
        """The workflow and each node's state and result; None once it expired."""
        return self.producer.inspector().workflow(self.id)

    def status(self) -> str | None:
        """running, succeeded or failed; None once the workflow expired."""
        return drive(_status(self.producer, self.id), self.producer.sync_broker().run)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow to end and return its result (the last step's, a
        group's list). Raises WorkflowFailedError if it failed, ResultTimeoutError if it
        has not ended after `timeout` seconds, WorkflowNotFoundError if it is unknown or
        expired. Waits on its tasks' events, not by polling (see `_result`)."""
        return drive(_result(self.producer, self.id, timeout), self.producer.sync_broker().run)

    async def view_async(self) -> WorkflowView | None:
        """Like `view`, from asyncio code."""
        return await self.producer.async_inspector().workflow(self.id)

    async def status_async(self) -> str | None:
        """Like `status`, from asyncio code."""
        return await drive_async(_status(self.producer, self.id), self.producer.async_broker().run)

    async def result_async(self, timeout: float | None = None) -> Any:
        """Like `result`, from asyncio code."""
        broker = self.producer.async_broker()
        return await drive_async(_result(self.producer, self.id, timeout), broker.run)


def _status(producer: Producer, workflow_id: str) -> Steps[Op[Any], str | None]:
    outcome: Outcome = yield workflow_ops(producer).outcome(workflow_id)
    return outcome.state or None


def _result(producer: Producer, workflow_id: str, timeout: float | None) -> Steps[Op[Any], Any]:
    """Reads the workflow's outcome until it ended, waiting in between for a final event
    of one of its tasks (or RECHECK_EVERY s).

    A workflow ends when one of its tasks does: the worker records the step (and starts
    what follows) before it writes the task's outcome, whose event comes after. So an
    outcome read after an event reflects that task's end; the cursor is taken before the
    first read, so no end is missed between the two.
    """
    workflows = workflow_ops(producer)
    ops = workflows.ops
    deadline = None if timeout is None else time.monotonic() + timeout
    cursor: str | None = None
    while True:
        tasks: set[str] = yield workflows.task_ids(workflow_id)
        queues = sorted({queue_of(t) for t in tasks if is_task_id(t)}) or [DEFAULT_QUEUE]
        if cursor is None:
            cursor = yield latest(ops, queues)
        outcome: Outcome = yield workflows.outcome(workflow_id)
        if outcome.state == "succeeded":
            return outcome.result
        if outcome.state == "failed":
            raise WorkflowFailedError(workflow_id, outcome.error)
        if not outcome.state:
            raise WorkflowNotFoundError(f"no workflow {workflow_id} (never enqueued, or expired)")
        checked = time.monotonic()
        ended = False
        while not ended and time.monotonic() - checked < RECHECK_EVERY:
            left = RECHECK_EVERY if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise ResultTimeoutError(f"workflow {workflow_id} not finished after {timeout}s")
            events: list[Event] = yield read_events(
                ops, queues, cursor, MAX_PAGE, block=min(left, RECHECK_EVERY)
            )
            if events:
                cursor = events[-1].id
            ended = any(e.final and e.task_id in tasks for e in events)
