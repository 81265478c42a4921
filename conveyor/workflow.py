"""Producing workflows: store and begin one, and follow it to its end (`WorkflowHandle`).

Each procedure is written once as `Steps` (see broker/steps.py) and driven by a sync or an
async broker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

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
from conveyor.ids import new_ulid
from conveyor.model import to_millis
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
        return (yield from launch(workflows, workflow_id, step))

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

    def result(self, timeout: float | None = None, poll: float = 0.05) -> Any:
        """Wait for the workflow to end and return its result (the last step's, a
        group's list). Raises WorkflowFailedError if it failed, ResultTimeoutError if it
        has not ended after `timeout` seconds, WorkflowNotFoundError if it is unknown or
        expired."""
        broker = self.producer.sync_broker()

        def answer(request: Op[Any] | float) -> Any:
            if isinstance(request, Op):
                return broker.run(request)
            time.sleep(request)
            return None

        return drive(_result(self.producer, self.id, timeout, poll), answer)

    async def view_async(self) -> WorkflowView | None:
        """Like `view`, from asyncio code."""
        return await self.producer.async_inspector().workflow(self.id)

    async def status_async(self) -> str | None:
        """Like `status`, from asyncio code."""
        return await drive_async(_status(self.producer, self.id), self.producer.async_broker().run)

    async def result_async(self, timeout: float | None = None, poll: float = 0.05) -> Any:
        """Like `result`, from asyncio code."""
        broker = self.producer.async_broker()

        async def answer(request: Op[Any] | float) -> Any:
            if isinstance(request, Op):
                return await broker.run(request)
            await asyncio.sleep(request)
            return None

        return await drive_async(_result(self.producer, self.id, timeout, poll), answer)


def _status(producer: Producer, workflow_id: str) -> Steps[Op[Any], str | None]:
    outcome: Outcome = yield workflow_ops(producer).outcome(workflow_id)
    return outcome.state or None


def _result(
    producer: Producer, workflow_id: str, timeout: float | None, poll: float
) -> Steps[Op[Any] | float, Any]:
    """Reads the workflow's outcome until it ended; sleeps (yields a float) in between."""
    workflows = workflow_ops(producer)
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = poll
    while True:
        outcome: Outcome = yield workflows.outcome(workflow_id)
        if outcome.state == "succeeded":
            return outcome.result
        if outcome.state == "failed":
            raise WorkflowFailedError(workflow_id, outcome.error)
        if not outcome.state:
            raise WorkflowNotFoundError(f"no workflow {workflow_id} (never enqueued, or expired)")
        if deadline is not None and time.monotonic() >= deadline:
            raise ResultTimeoutError(f"workflow {workflow_id} not finished after {timeout}s")
        yield delay
        delay = min(delay * 1.5, 0.5)
