"""The Inspector: the one reader and administrator of the keyspace, behind the CLI, the
REST API, the dashboard, the metrics collector, `doctor`, `fsck` and task handles.

Its two faces run the same sans-IO procedures (`broker/admin.py`, `broker/fsck.py`): the
async face over an AsyncBroker (sharing round trips with concurrent callers), the sync
face over a SyncBroker. Each method is one line of delegation: the logic is written once.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, TypeVar

from conveyor.broker import audit, browse, events
from conveyor.broker.acl import Permissions, judge, probes
from conveyor.broker.actions import Actions
from conveyor.broker.admin import Admin, Procedure, Shard, one
from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.audit import Actor, AuditEntry
from conveyor.broker.browse import PointCache
from conveyor.broker.dead_letters import NO_FILTER, DeadFilter, DeadLetterAdmin
from conveyor.broker.flow_state import FlowState, flow_state
from conveyor.broker.fsck import STUCK_AFTER, Finding, Fsck
from conveyor.broker.ops import Op
from conveyor.broker.records import QueueStats
from conveyor.broker.schedules import AsyncSchedules, SyncSchedules
from conveyor.broker.steps import drive, drive_async
from conveyor.broker.sync_broker import SyncBroker
from conveyor.broker.timeseries import Point
from conveyor.broker.transport import READ_BLOCK_MAX, ReplyError
from conveyor.broker.workflows import WorkflowOps, WorkflowSummary, WorkflowView
from conveyor.events import Event
from conveyor.model import TaskRecord, TaskState

T = TypeVar("T")


class AsyncInspector:
    """Read and administer queues, tasks, dead letters, workers and the server (asyncio)."""

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker
        self._admin = Admin(broker.ops)
        self._dead = DeadLetterAdmin(broker.ops)
        self._act = Actions(broker.ops)
        #: periodic schedules: list, upsert, pause, resume, remove
        self.schedules = AsyncSchedules(broker)

    async def _run(self, procedure: Procedure[T]) -> T:
        return await drive_async(procedure, self._answer)

    async def _answer(self, op: Op[T]) -> T:
        # a blocking read has a connection of its own; the rest share round trips
        return await (self.broker.run(op) if op.blocks else self.broker.shared.run(op))

    async def queue_names(self) -> list[str]:
        """Every queue ever enqueued to, sorted."""
        return await self._run(self._admin.queue_names())

    async def queue_stats(self, names: Sequence[str] | None = None) -> list[QueueStats]:
        """Depths and lag of `names` (default: every known queue) in one round trip."""
        return await self._run(self._admin.queue_stats(names))

    async def queue(self, name: str) -> QueueStats | None:
        """One queue's stats, or None if nothing was ever enqueued to it."""
        return await self._run(self._admin.queue(name))

    async def flow(self, queue: str) -> FlowState:
        """Flow control in `queue`: concurrency slots and waiting tasks, rate buckets."""
        return await self._run(flow_state(self.broker.ops, queue))

    async def set_paused(
        self, queue: str, paused: bool, *, actor: Actor | None = None
    ) -> QueueStats:
        """Pause (no worker claims from it) or resume a queue; returns its stats."""
        return await self._run(self._act.set_paused(queue, paused, actor))

    async def task(self, task_id: str) -> TaskRecord | None:
        """A task record by id, or None (unknown, expired, or not a task id)."""
        return await self._run(self._admin.task(task_id))

    async def wait_finished(self, task_id: str, timeout: float | None) -> TaskRecord | None:
        """The task's record once it ended, or as it is after `timeout` seconds (None if
        unknown): waits on its queue's events, not by reading the record in a loop."""
        return await self._run(events.wait_finished(self.broker.ops, task_id, timeout))

    async def events(
        self,
        queues: Sequence[str] | None = None,
        *,
        after: str = events.START,
        count: int = 100,
        block: float = 0.0,
    ) -> list[Event]:
        """State changes of `queues` (default: all) after the event id `after`, oldest
        first; with `block`, wait up to that many seconds (at most 10) for the next."""
        return await self._run(events.page(self.broker.ops, queues, after, count, block))

    async def follow(
        self, queues: Sequence[str] | None, after: str, seconds: float
    ) -> AsyncIterator[list[Event]]:
        """Pages of the state changes of `queues` after `after`, as they come, for
        `seconds`; an empty page when READ_BLOCK_MAX passed without any (time for a
        keep-alive). What the REST API's and the dashboard's event streams read."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            block = min(left, READ_BLOCK_MAX)
            page = await self.events(queues, after=after, count=events.MAX_PAGE, block=block)
            if page:
                after = page[-1].id
            yield page

    async def latest_event(self, queues: Sequence[str] | None = None) -> str:
        """The cursor after every event of `queues` so far: follow from it for new ones."""
        return await self._run(events.cursor_now(self.broker.ops, queues))

    async def records(self, task_ids: Sequence[str]) -> list[TaskRecord | None]:
        """Records of many tasks in order (None where unknown), a thousand per round trip."""
        return await self._run(self._admin.records(task_ids))

    async def tasks(
        self,
        queue: str,
        state: str,
        *,
        newest_first: bool = False,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[TaskRecord]]:
        """(total, page) of a queue's tasks in an indexed state (see browse.LISTED_STATES)."""
        return await self._run(
            browse.tasks(
                self.broker.ops, queue, state, newest_first=newest_first, offset=offset, limit=limit
            )
        )

    async def workflow(self, workflow_id: str) -> WorkflowView | None:
        """A workflow and each node's state and result, or None (unknown or expired)."""
        return await self._run(WorkflowOps(self.broker.ops).read(workflow_id))

    async def workflows(
        self, offset: int = 0, limit: int = 50
    ) -> tuple[int, list[WorkflowSummary]]:
        """(total, page) of the workflows enqueued, newest first, with their states."""
        return await self._run(WorkflowOps(self.broker.ops).index(offset, limit))

    async def cancel(self, task_id: str, *, actor: Actor | None = None) -> TaskState:
        """Cancel a task: CANCELLED if not yet started, CANCELLING if running;
        TaskConflictError once finished, TaskNotFoundError if unknown."""
        return await self._run(self._act.cancel(task_id, actor))

    async def run_now(self, task_id: str, *, actor: Actor | None = None) -> str:
        """Run a delayed task or waiting retry now; its state before (raises as cancel)."""
        return await self._run(self._act.run_now(task_id, actor))

    async def delete_task(self, task_id: str, *, actor: Actor | None = None) -> str:
        """Delete a task that is not running; returns the state it had (or raises as cancel)."""
        return await self._run(self._act.delete_task(task_id, actor))

    async def workers(self) -> list[dict[str, Any]]:
        """Workers alive by heartbeat."""
        return await self._run(self._admin.workers())

    async def ping(self) -> None:
        """Redis answers; BrokerUnavailableError if not."""
        await self._run(self._admin.ping())

    async def server_config(self) -> dict[str, str]:
        """Redis' CONFIG GET *; ReplyError where CONFIG is forbidden."""
        return await self._run(self._admin.server_config())

    async def server_info(self) -> dict[str, Any]:
        """Redis' INFO all."""
        return await self._run(self._admin.server_info())

    async def queue_nodes(self, names: Sequence[str]) -> dict[str, str]:
        """The Redis Cluster master (host:port) serving each queue; empty when standalone."""
        return await self._run(self._admin.queue_nodes(names))

    async def server_time(self) -> float:
        """Redis' clock, in seconds since the epoch."""
        return await self._run(self._admin.server_time())

    async def history(
        self, window: str, queue: str | None = None, cache: PointCache | None = None
    ) -> tuple[int, list[Point]]:
        """(step, points) of outcome rates and latencies over a window (see browse.history)."""
        return await self._run(browse.history(self.broker.ops, window, queue, cache))

    async def audit_log(self, offset: int = 0, limit: int = 50) -> tuple[int, list[AuditEntry]]:
        """(total, page) of the audit log, newest first."""
        return await self._run(one(audit.read(self.broker.ops.keys, offset, limit)))

    async def dead_letters(
        self,
        queues: Sequence[str] | None = None,
        *,
        offset: int = 0,
        limit: int = 50,
        task_name: str | None = None,
        where: DeadFilter = NO_FILTER,
    ) -> tuple[int, list[TaskRecord]]:
        """(total, page) of dead letters matching a filter, newest first (default: all queues)."""
        return await self._run(
            self._dead.page(queues, offset=offset, limit=limit, task_name=task_name, where=where)
        )

    async def dead_letter(self, task_id: str) -> TaskRecord | None:
        """A dead letter by id, or None if it is not in its dead-letter queue."""
        return await self._run(self._dead.get(task_id))

    async def replay(self, task_ids: Iterable[str], *, actor: Actor | None = None) -> list[str]:
        """Requeue dead letters by id; returns the ids replayed."""
        return await self._run(self._act.replay(task_ids, actor))

    async def replay_all(
        self,
        queues: Sequence[str] | None = None,
        task_name: str | None = None,
        *,
        where: DeadFilter = NO_FILTER,
        actor: Actor | None = None,
    ) -> int:
        """Requeue every dead letter (of `queues`, of one task name, matching `where`); how many."""
        return await self._run(self._act.replay_all(queues, _named(where, task_name), actor))

    async def replay_edited(
        self, task_id: str, args: list[Any], kwargs: dict[str, Any], *, actor: Actor | None = None
    ) -> bool:
        """Requeue a dead letter with a corrected payload; False if it is not a dead letter."""
        return await self._run(self._act.replay_edited(task_id, args, kwargs, actor))

    async def delete_dead(self, task_ids: Iterable[str], *, actor: Actor | None = None) -> int:
        """Delete dead letters and their records by id; returns how many."""
        return await self._run(self._act.delete_dead(task_ids, actor))

    async def delete_dead_matching(
        self, queues: Sequence[str] | None, where: DeadFilter, *, actor: Actor | None = None
    ) -> int:
        """Delete the dead letters of `queues` matching `where`; returns how many."""
        return await self._run(self._act.delete_dead_matching(queues, where, actor))

    async def purge_dead(
        self, queues: Sequence[str] | None = None, *, actor: Actor | None = None
    ) -> int:
        """Delete every dead letter (of `queues`); returns how many."""
        return await self._run(self._act.purge_dead(queues, actor))


class SyncInspector:
    """The same as AsyncInspector, blocking; plus the operator's checks (doctor, fsck)."""

    def __init__(self, broker: SyncBroker) -> None:
        self.broker = broker
        self._admin = Admin(broker.ops)
        self._dead = DeadLetterAdmin(broker.ops)
        self._act = Actions(broker.ops)
        #: periodic schedules: list, upsert, pause, resume, remove
        self.schedules = SyncSchedules(broker)

    def _run(self, procedure: Procedure[T]) -> T:
        return drive(procedure, self.broker.run)

    def queue_names(self) -> list[str]:
        """Every queue ever enqueued to, sorted."""
        return self._run(self._admin.queue_names())

    def queue_stats(self, names: Sequence[str] | None = None) -> list[QueueStats]:
        """Depths and lag of `names` (default: every known queue) in one round trip."""
        return self._run(self._admin.queue_stats(names))

    def queue(self, name: str) -> QueueStats | None:
        """One queue's stats, or None if nothing was ever enqueued to it."""
        return self._run(self._admin.queue(name))

    def flow(self, queue: str) -> FlowState:
        """Flow control in `queue`: concurrency slots and waiting tasks, rate buckets."""
        return self._run(flow_state(self.broker.ops, queue))

    def set_paused(self, queue: str, paused: bool, *, actor: Actor | None = None) -> QueueStats:
        """Pause (no worker claims from it) or resume a queue; returns its stats."""
        return self._run(self._act.set_paused(queue, paused, actor))

    def task(self, task_id: str) -> TaskRecord | None:
        """A task record by id, or None (unknown, expired, or not a task id)."""
        return self._run(self._admin.task(task_id))

    def wait_finished(self, task_id: str, timeout: float | None) -> TaskRecord | None:
        """The task's record once it ended, or as it is after `timeout` seconds (None if
        unknown): waits on its queue's events, not by reading the record in a loop."""
        return self._run(events.wait_finished(self.broker.ops, task_id, timeout))

    def events(
        self,
        queues: Sequence[str] | None = None,
        *,
        after: str = events.START,
        count: int = 100,
        block: float = 0.0,
    ) -> list[Event]:
        """State changes of `queues` (default: all) after the event id `after`, oldest
        first; with `block`, wait up to that many seconds (at most 10) for the next."""
        return self._run(events.page(self.broker.ops, queues, after, count, block))

    def latest_event(self, queues: Sequence[str] | None = None) -> str:
        """The cursor after every event of `queues` so far: follow from it for new ones."""
        return self._run(events.cursor_now(self.broker.ops, queues))

    def records(self, task_ids: Sequence[str]) -> list[TaskRecord | None]:
        """Records of many tasks in order (None where unknown), a thousand per round trip."""
        return self._run(self._admin.records(task_ids))

    def tasks(
        self,
        queue: str,
        state: str,
        *,
        newest_first: bool = False,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[int, list[TaskRecord]]:
        """(total, page) of a queue's tasks in an indexed state (see browse.LISTED_STATES)."""
        return self._run(
            browse.tasks(
                self.broker.ops, queue, state, newest_first=newest_first, offset=offset, limit=limit
            )
        )

    def workflow(self, workflow_id: str) -> WorkflowView | None:
        """A workflow and each node's state and result, or None (unknown or expired)."""
        return self._run(WorkflowOps(self.broker.ops).read(workflow_id))

    def workflows(self, offset: int = 0, limit: int = 50) -> tuple[int, list[WorkflowSummary]]:
        """(total, page) of the workflows enqueued, newest first, with their states."""
        return self._run(WorkflowOps(self.broker.ops).index(offset, limit))

    def cancel(self, task_id: str, *, actor: Actor | None = None) -> TaskState:
        """Cancel a task: CANCELLED if not yet started, CANCELLING if running;
        TaskConflictError once finished, TaskNotFoundError if unknown."""
        return self._run(self._act.cancel(task_id, actor))

    def run_now(self, task_id: str, *, actor: Actor | None = None) -> str:
        """Run a delayed task or waiting retry now; its state before (raises as cancel)."""
        return self._run(self._act.run_now(task_id, actor))

    def delete_task(self, task_id: str, *, actor: Actor | None = None) -> str:
        """Delete a task that is not running; returns the state it had (or raises as cancel)."""
        return self._run(self._act.delete_task(task_id, actor))

    def workers(self) -> list[dict[str, Any]]:
        """Workers alive by heartbeat."""
        return self._run(self._admin.workers())

    def ping(self) -> None:
        """Redis answers; BrokerUnavailableError if not."""
        self._run(self._admin.ping())

    def server_config(self, node: str | None = None) -> dict[str, str]:
        """Redis' CONFIG GET * (`node`: of that Cluster master); ReplyError where CONFIG
        is forbidden."""
        return self._run(self._admin.server_config(node))

    def server_info(self, node: str | None = None) -> dict[str, Any]:
        """Redis' INFO all (`node`: of that Cluster master)."""
        return self._run(self._admin.server_info(node))

    def server_address(self) -> str:
        """host:port of the Redis that calls go to now (a Sentinel group's current master)."""
        return self.broker.transport.server_address()

    def whoami(self) -> str:
        """The ACL user Conveyor connects as; ReplyError where ACL WHOAMI is forbidden."""
        return self._run(self._admin.whoami())

    def permissions(self) -> Permissions:
        """Which commands Conveyor needs (on keys and channels under its prefix) the user
        may not run, probed without running any (see broker/acl.py)."""
        checked = probes(self.broker.settings.prefix)
        try:
            replies = self.broker.transport.queue_only([p.args for p in checked])
        except ReplyError as exc:
            return Permissions((), (), f"MULTI is refused ({exc})")
        return judge(checked, replies)

    def server_time(self) -> float:
        """Redis' clock, in seconds since the epoch."""
        return self._run(self._admin.server_time())

    def queue_nodes(self, names: Sequence[str]) -> dict[str, str]:
        """The Redis Cluster master (host:port) serving each queue; empty when standalone."""
        return self._run(self._admin.queue_nodes(names))

    def cluster_masters(self) -> list[Shard]:
        """A Redis Cluster's masters and their slots; empty when standalone."""
        return self._run(self._admin.cluster_masters())

    def history(
        self, window: str, queue: str | None = None, cache: PointCache | None = None
    ) -> tuple[int, list[Point]]:
        """(step, points) of outcome rates and latencies over a window (see browse.history)."""
        return self._run(browse.history(self.broker.ops, window, queue, cache))

    def audit_log(self, offset: int = 0, limit: int = 50) -> tuple[int, list[AuditEntry]]:
        """(total, page) of the audit log, newest first."""
        return self._run(one(audit.read(self.broker.ops.keys, offset, limit)))

    def dead_letters(
        self,
        queues: Sequence[str] | None = None,
        *,
        offset: int = 0,
        limit: int = 50,
        task_name: str | None = None,
        where: DeadFilter = NO_FILTER,
    ) -> tuple[int, list[TaskRecord]]:
        """(total, page) of dead letters matching a filter, newest first (default: all queues)."""
        return self._run(
            self._dead.page(queues, offset=offset, limit=limit, task_name=task_name, where=where)
        )

    def dead_letter(self, task_id: str) -> TaskRecord | None:
        """A dead letter by id, or None if it is not in its dead-letter queue."""
        return self._run(self._dead.get(task_id))

    def replay(self, task_ids: Iterable[str], *, actor: Actor | None = None) -> list[str]:
        """Requeue dead letters by id; returns the ids replayed."""
        return self._run(self._act.replay(task_ids, actor))

    def replay_all(
        self,
        queues: Sequence[str] | None = None,
        task_name: str | None = None,
        *,
        where: DeadFilter = NO_FILTER,
        actor: Actor | None = None,
    ) -> int:
        """Requeue every dead letter (of `queues`, of one task name, matching `where`); how many."""
        return self._run(self._act.replay_all(queues, _named(where, task_name), actor))

    def replay_edited(
        self, task_id: str, args: list[Any], kwargs: dict[str, Any], *, actor: Actor | None = None
    ) -> bool:
        """Requeue a dead letter with a corrected payload; False if it is not a dead letter."""
        return self._run(self._act.replay_edited(task_id, args, kwargs, actor))

    def delete_dead(self, task_ids: Iterable[str], *, actor: Actor | None = None) -> int:
        """Delete dead letters and their records by id; returns how many."""
        return self._run(self._act.delete_dead(task_ids, actor))

    def delete_dead_matching(
        self, queues: Sequence[str] | None, where: DeadFilter, *, actor: Actor | None = None
    ) -> int:
        """Delete the dead letters of `queues` matching `where`; returns how many."""
        return self._run(self._act.delete_dead_matching(queues, where, actor))

    def purge_dead(self, queues: Sequence[str] | None = None, *, actor: Actor | None = None) -> int:
        """Delete every dead letter (of `queues`); returns how many."""
        return self._run(self._act.purge_dead(queues, actor))

    def fsck(
        self, repair: bool = False, queues: Sequence[str] = (), stuck_after: float = STUCK_AFTER
    ) -> list[Finding]:
        """Inconsistent states of the keyspace (repaired with `repair`); see broker/fsck.py."""
        return self._run(Fsck(self.broker.ops, stuck_after=stuck_after).run(repair, queues))


def _named(where: DeadFilter, task_name: str | None) -> DeadFilter:
    """`where`, narrowed to one task name if given."""
    if task_name is None:
        return where
    return DeadFilter(task_name, where.text, where.min_age, where.max_age)
