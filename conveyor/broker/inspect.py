"""The Inspector: the one reader and administrator of the keyspace, behind the CLI, the
REST API, the dashboard, the metrics collector, `doctor`, `fsck` and task handles.

Its two faces run the same sans-IO procedures (`broker/admin.py`, `broker/fsck.py`): the
async face over an AsyncBroker (sharing round trips with concurrent callers), the sync
face over a SyncBroker. Each method is one line of delegation: the logic is written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from conveyor.broker.admin import Admin, DeadLetterAdmin, Procedure
from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.fsck import STUCK_AFTER, Finding, Fsck
from conveyor.broker.records import QueueStats
from conveyor.broker.steps import drive, drive_async
from conveyor.broker.sync_broker import SyncBroker
from conveyor.model import TaskRecord

T = TypeVar("T")


class AsyncInspector:
    """Read and administer queues, tasks, dead letters, workers and the server (asyncio)."""

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker
        self._admin = Admin(broker.ops)
        self._dead = DeadLetterAdmin(broker.ops)

    async def _run(self, procedure: Procedure[T]) -> T:
        return await drive_async(procedure, self.broker.shared.run)

    async def queue_names(self) -> list[str]:
        """Every queue ever enqueued to, sorted."""
        return await self._run(self._admin.queue_names())

    async def queue_stats(self, names: Sequence[str] | None = None) -> list[QueueStats]:
        """Depths and lag of `names` (default: every known queue) in one round trip."""
        return await self._run(self._admin.queue_stats(names))

    async def queue(self, name: str) -> QueueStats | None:
        """One queue's stats, or None if nothing was ever enqueued to it."""
        return await self._run(self._admin.queue(name))

    async def set_paused(self, queue: str, paused: bool) -> QueueStats:
        """Pause (no worker claims from it) or resume a queue; returns its stats."""
        return await self._run(self._admin.set_paused(queue, paused))

    async def task(self, task_id: str) -> TaskRecord | None:
        """A task record by id, or None (unknown, expired, or not a task id)."""
        return await self._run(self._admin.task(task_id))

    async def cancel(self, task_id: str) -> None:
        """Cancel a task not yet started; TaskConflictError or TaskNotFoundError if not."""
        await self._run(self._admin.cancel(task_id))

    async def workers(self) -> list[dict[str, Any]]:
        """Workers alive by heartbeat."""
        return await self._run(self._admin.workers())

    async def ping(self) -> None:
        """Redis answers; BrokerUnavailableError if not."""
        await self._run(self._admin.ping())

    async def server_config(self) -> dict[str, str]:
        """Redis' CONFIG GET *; ReplyError where CONFIG is forbidden."""
        return await self._run(self._admin.server_config())

    async def dead_letters(
        self,
        queues: Sequence[str] | None = None,
        *,
        offset: int = 0,
        limit: int = 50,
        task_name: str | None = None,
    ) -> tuple[int, list[TaskRecord]]:
        """(total, page) of dead letters, newest first (default: of every queue)."""
        page = self._dead.page(queues, offset=offset, limit=limit, task_name=task_name)
        return await self._run(page)

    async def dead_letter(self, task_id: str) -> TaskRecord | None:
        """A dead letter by id, or None if it is not in its dead-letter queue."""
        return await self._run(self._dead.get(task_id))

    async def replay(self, task_ids: Iterable[str]) -> list[str]:
        """Requeue dead letters by id; returns the ids replayed."""
        return await self._run(self._dead.replay(task_ids))

    async def replay_all(
        self, queues: Sequence[str] | None = None, task_name: str | None = None
    ) -> int:
        """Requeue every dead letter (of `queues`, of one task name); returns how many."""
        return await self._run(self._dead.replay_all(queues, task_name))

    async def delete_dead(self, task_ids: Iterable[str]) -> int:
        """Delete dead letters and their records by id; returns how many."""
        return await self._run(self._dead.delete(task_ids))

    async def purge_dead(self, queues: Sequence[str] | None = None) -> int:
        """Delete every dead letter (of `queues`); returns how many."""
        return await self._run(self._dead.purge(queues))


class SyncInspector:
    """The same as AsyncInspector, blocking; plus the operator's checks (doctor, fsck)."""

    def __init__(self, broker: SyncBroker) -> None:
        self.broker = broker
        self._admin = Admin(broker.ops)
        self._dead = DeadLetterAdmin(broker.ops)

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

    def set_paused(self, queue: str, paused: bool) -> QueueStats:
        """Pause (no worker claims from it) or resume a queue; returns its stats."""
        return self._run(self._admin.set_paused(queue, paused))

    def task(self, task_id: str) -> TaskRecord | None:
        """A task record by id, or None (unknown, expired, or not a task id)."""
        return self._run(self._admin.task(task_id))

    def cancel(self, task_id: str) -> None:
        """Cancel a task not yet started; TaskConflictError or TaskNotFoundError if not."""
        self._run(self._admin.cancel(task_id))

    def workers(self) -> list[dict[str, Any]]:
        """Workers alive by heartbeat."""
        return self._run(self._admin.workers())

    def ping(self) -> None:
        """Redis answers; BrokerUnavailableError if not."""
        self._run(self._admin.ping())

    def server_config(self) -> dict[str, str]:
        """Redis' CONFIG GET *; ReplyError where CONFIG is forbidden."""
        return self._run(self._admin.server_config())

    def server_info(self) -> dict[str, Any]:
        """Redis' INFO all."""
        return self._run(self._admin.server_info())

    def server_time(self) -> float:
        """Redis' clock, in seconds since the epoch."""
        return self._run(self._admin.server_time())

    def dead_letters(
        self,
        queues: Sequence[str] | None = None,
        *,
        offset: int = 0,
        limit: int = 50,
        task_name: str | None = None,
    ) -> tuple[int, list[TaskRecord]]:
        """(total, page) of dead letters, newest first (default: of every queue)."""
        return self._run(self._dead.page(queues, offset=offset, limit=limit, task_name=task_name))

    def dead_letter(self, task_id: str) -> TaskRecord | None:
        """A dead letter by id, or None if it is not in its dead-letter queue."""
        return self._run(self._dead.get(task_id))

    def replay(self, task_ids: Iterable[str]) -> list[str]:
        """Requeue dead letters by id; returns the ids replayed."""
        return self._run(self._dead.replay(task_ids))

    def replay_all(self, queues: Sequence[str] | None = None, task_name: str | None = None) -> int:
        """Requeue every dead letter (of `queues`, of one task name); returns how many."""
        return self._run(self._dead.replay_all(queues, task_name))

    def delete_dead(self, task_ids: Iterable[str]) -> int:
        """Delete dead letters and their records by id; returns how many."""
        return self._run(self._dead.delete(task_ids))

    def purge_dead(self, queues: Sequence[str] | None = None) -> int:
        """Delete every dead letter (of `queues`); returns how many."""
        return self._run(self._dead.purge(queues))

    def fsck(
        self, repair: bool = False, queues: Sequence[str] = (), stuck_after: float = STUCK_AFTER
    ) -> list[Finding]:
        """Inconsistent states of the keyspace (repaired with `repair`); see broker/fsck.py."""
        return self._run(Fsck(self.broker.ops, stuck_after=stuck_after).run(repair, queues))
