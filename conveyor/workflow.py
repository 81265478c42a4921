"""Running workflows: store and begin one, advance one by a task node's end (the worker),
start the task nodes a step returns, and follow a workflow to its end (`WorkflowHandle`).

Each procedure is written once as `Steps` (see broker/steps.py) and driven by a sync or an
async broker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from conveyor import serializers
from conveyor.broker.ops import Op, Operations, raw
from conveyor.broker.records import NewTask
from conveyor.broker.steps import Steps, drive, drive_async
from conveyor.broker.workflows import Outcome, Start, Step, WorkflowOps, WorkflowView
from conveyor.canvas import FAILURE_POLICIES, FailurePolicy, Workflow, compile_workflow
from conveyor.errors import ConfigurationError, ResultTimeoutError, WorkflowFailedError
from conveyor.ids import new_ulid
from conveyor.model import to_millis
from conveyor.options import TaskOptions
from conveyor.producer import Message, Producer

#: The idempotency key of the task that runs a node: however often a step returns the
#: node (a repeat after a crash), it is enqueued once.
NODE_KEY = "workflow:{workflow}:{node}"
#: A procedure over broker operations.
Procedure = Steps[Op[Any], Any]


def workflow_ops(producer: Producer) -> WorkflowOps:
    """The workflow operations on the producer's keyspace (no connection needed)."""
    return WorkflowOps(Operations(producer.settings))


def start_tasks(producer: Producer, workflow_id: str, starts: Sequence[Start]) -> list[NewTask]:
    """The tasks that run `starts`: each node's message, its input first among its
    arguments, under the node's idempotency key and tagged with its `workflow` field."""
    tasks = []
    for start in starts:
        spec = serializers.loads(start.spec)
        args = list(spec["args"])
        if start.input is not None:
            args.insert(0, serializers.loads(start.input))
        options: dict[str, Any] = dict(spec["options"])
        if "eta" in options:
            options["eta"] = datetime.fromtimestamp(options["eta"], UTC)
        options["idempotency_key"] = NODE_KEY.format(workflow=workflow_id, node=start.node)
        message = Message(spec["name"], tuple(args), spec["kwargs"], TaskOptions(**options))
        task = producer.encode(message)
        tasks.append(dataclasses.replace(task, workflow=f"{workflow_id}:{start.node}"))
    return tasks


def launch(
    producer: Producer, workflows: WorkflowOps, workflow_id: str, step: Step
) -> Steps[Op[Any], Step]:
    """Enqueue the task nodes `step` returned, then note which task runs each."""
    tasks = start_tasks(producer, workflow_id, step.starts)
    if tasks:
        results = yield workflows.ops.enqueue(tasks, sorted({t.queue for t in tasks}))
        yield raw(workflows.started(workflow_id, tasks, results))
    return step


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
        return (yield from launch(producer, workflows, workflow_id, step))

    return workflow_id, procedure()


def advance(
    producer: Producer,
    workflows: WorkflowOps,
    workflow_field: str,
    outcome: str,
    payload: bytes,
    task_id: str,
) -> Steps[Op[Any], Step]:
    """Record how the task of a workflow node ended (`outcome` succeeded or failed, with
    its result or error description), then start what that sets going."""
    workflow_id, _, node = workflow_field.rpartition(":")
    step = yield workflows.step(workflow_id, node, outcome, payload, task_id)
    return (yield from launch(producer, workflows, workflow_id, step))


def error_description(node: str, task_id: str, state: str, error: bytes) -> bytes:
    """What stands in for a failed node's result (policy "continue") or is the failed
    workflow's error (policy "stop"): its node, task, final state and error."""
    cause = serializers.loads(error) if error else {}
    if isinstance(cause, dict):
        cause.pop("traceback", None)
    return serializers.dumps({"node": node, "task_id": task_id, "state": state, "error": cause})


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
        has not ended after `timeout` seconds."""
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
        if deadline is not None and time.monotonic() >= deadline:
            raise ResultTimeoutError(f"workflow {workflow_id} not finished after {timeout}s")
        yield delay
        delay = min(delay * 1.5, 0.5)
