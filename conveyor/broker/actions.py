"""An operator's actions, each followed by its audit entry when an `Actor` acts: what the
Inspector's two faces run for the dashboard, the API and the CLI (sans-IO, see admin.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from conveyor.broker.admin import Admin, Procedure
from conveyor.broker.audit import Actor, audited
from conveyor.broker.dead_letters import NO_FILTER, DeadFilter, DeadLetterAdmin
from conveyor.broker.ops import Operations
from conveyor.broker.records import QueueStats
from conveyor.broker.workflows import WorkflowOps, advance, error_description, node_of
from conveyor.model import TaskRecord, TaskState

#: The error a cancelled workflow task hands its workflow.
CANCELLED = b'{"type":"TaskCancelled","message":"cancelled"}'
#: The error a deleted workflow task hands its workflow.
DELETED = b'{"type":"TaskDeleted","message":"deleted by an operator"}'


class Actions:
    """Pause and resume, cancel, run now, delete, and the dead-letter actions."""

    def __init__(self, ops: Operations) -> None:
        self.keys = ops.keys
        self.admin = Admin(ops)
        self.dead = DeadLetterAdmin(ops)
        self.workflows = WorkflowOps(ops)

    def set_paused(self, queue: str, paused: bool, actor: Actor | None) -> Procedure[QueueStats]:
        """Pause or resume a queue."""
        action = "pause" if paused else "resume"
        procedure = self.admin.set_paused(queue, paused)
        return audited(self.keys, procedure, actor, action, queue, lambda _: 1)

    def cancel(self, task_id: str, actor: Actor | None) -> Procedure[TaskState]:
        """Cancel a task: cancelled if not yet started, else cancelling."""
        return audited(self.keys, self._cancel(task_id), actor, "cancel", task_id, _one)

    def _cancel(self, task_id: str) -> Procedure[TaskState]:
        """Cancel, then fail the task's workflow node if it has one (as a dead task's): a
        running task asked to stop ends cancelled, never retried."""
        state = yield from self.admin.cancel(task_id)
        record = yield from self.admin.task(task_id)
        yield from self._fail_node(record, "cancelled", CANCELLED)
        return state

    def run_now(self, task_id: str, actor: Actor | None) -> Procedure[str]:
        """Run a delayed task or a waiting retry now."""
        return audited(self.keys, self.admin.run_now(task_id), actor, "retry", task_id, _one)

    def delete_task(self, task_id: str, actor: Actor | None) -> Procedure[str]:
        """Delete a task that is not running."""
        return audited(self.keys, self._delete_task(task_id), actor, "delete", task_id, _one)

    def _delete_task(self, task_id: str) -> Procedure[str]:
        """Delete, then fail the task's workflow node if it has one: a deleted task never
        ends, and its workflow would wait for it forever (a node that ended already keeps
        its end: the first one recorded wins)."""
        record = yield from self.admin.task(task_id)
        state = yield from self.admin.delete_task(task_id)
        yield from self._fail_node(record, "deleted", DELETED)
        return state

    def _fail_node(self, record: TaskRecord | None, state: str, error: bytes) -> Procedure[None]:
        """Fail the workflow node `record`'s task runs, if it runs one."""
        if record is not None and record.workflow:
            description = error_description(node_of(record.workflow), record.id, state, error)
            yield from advance(self.workflows, record.workflow, "failed", description, record.id)

    def replay(self, task_ids: Iterable[str], actor: Actor | None) -> Procedure[list[str]]:
        """Requeue dead letters by id."""
        ids = list(task_ids)
        procedure = self.dead.replay(ids)
        return audited(self.keys, procedure, actor, "dead.retry", ", ".join(ids), len)

    def replay_all(
        self, queues: Sequence[str] | None, where: DeadFilter, actor: Actor | None
    ) -> Procedure[int]:
        """Requeue the dead letters matching a filter."""
        procedure = self.dead.replay_all(queues, where=where)
        return audited(self.keys, procedure, actor, "dead.retry", describe(queues, where), int)

    def replay_edited(
        self, task_id: str, args: list[Any], kwargs: dict[str, Any], actor: Actor | None
    ) -> Procedure[bool]:
        """Requeue one dead letter with a corrected payload."""
        procedure = self.dead.replay_edited(task_id, args, kwargs)
        return audited(self.keys, procedure, actor, "dead.replay_edited", task_id, int)

    def delete_dead(self, task_ids: Iterable[str], actor: Actor | None) -> Procedure[int]:
        """Delete dead letters by id."""
        ids = list(task_ids)
        procedure = self.dead.delete(ids)
        return audited(self.keys, procedure, actor, "dead.delete", ", ".join(ids), int)

    def delete_dead_matching(
        self, queues: Sequence[str] | None, where: DeadFilter, actor: Actor | None
    ) -> Procedure[int]:
        """Delete the dead letters matching a filter."""
        procedure = self.dead.delete_all(queues, where)
        return audited(self.keys, procedure, actor, "dead.delete", describe(queues, where), int)

    def purge_dead(self, queues: Sequence[str] | None, actor: Actor | None) -> Procedure[int]:
        """Delete every dead letter of `queues` (default: all)."""
        procedure = self.dead.purge(queues)
        target = describe(queues, NO_FILTER)
        return audited(self.keys, procedure, actor, "dead.purge", target, int)


def describe(queues: Sequence[str] | None, where: DeadFilter) -> str:
    """A bulk action's target, as the audit log shows it."""
    parts = [f"queues={','.join(queues)}" if queues else "all queues"]
    for name in ("task_name", "text", "min_age", "max_age"):
        value = getattr(where, name)
        if value:
            parts.append(f"{name}={value}")
    return " ".join(parts)


def _one(_: object) -> int:
    return 1
