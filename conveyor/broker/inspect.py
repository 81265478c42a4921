"""Inspector: the one read and admin API behind the CLI, the REST API and the metrics.
Nothing else reads the keyspace for display."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.deadletters import DeadLetters
from conveyor.broker.records import QueueStats
from conveyor.broker.scripts import Call
from conveyor.ids import is_task_id
from conveyor.model import TaskRecord


class Inspector:
    """Read and administer queues, tasks, workers and (through `dead`) dead letters."""

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker
        self.ops = broker.ops
        self.dead = DeadLetters(broker)

    async def queue_names(self) -> list[str]:
        """Every queue ever enqueued to, sorted."""
        return await self.broker.run(self.ops.queue_names())

    async def queue_stats(self, names: Sequence[str] | None = None) -> list[QueueStats]:
        """Depths and lag of `names` (default: every known queue) in one round trip."""
        names = list(names) if names is not None else await self.queue_names()
        return await self.broker.run(self.ops.queue_stats(names)) if names else []

    async def queue(self, name: str) -> QueueStats | None:
        """One queue's stats, or None if nothing was ever enqueued to it."""
        (known,) = await self.broker.execute(
            [Call.command("SISMEMBER", self.ops.keys.queues, self.ops.queue_keys(name).queue)]
        )
        return (await self.queue_stats([name]))[0] if known else None

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause (no worker claims from it) or resume a queue."""
        k = self.ops.queue_keys(queue)
        call = Call.command("SET", k.paused, 1) if paused else Call.command("DEL", k.paused)
        # a queue paused before its first task is still listed, so it can be resumed
        await self.broker.execute([call, Call.command("SADD", self.ops.keys.queues, queue)])

    async def task(self, task_id: str) -> TaskRecord | None:
        """A task record by id, or None (unknown, expired, or not a task id)."""
        if not is_task_id(task_id):
            return None
        return await self.broker.run(self.ops.fetch_record(task_id))

    async def cancel(self, task_id: str) -> tuple[bool, str]:
        """Cancel a task; (cancelled, state before it, "" if unknown)."""
        if not is_task_id(task_id):
            return False, ""
        return await self.broker.run(self.ops.cancel(task_id))

    async def workers(self) -> list[dict[str, Any]]:
        """Workers alive by heartbeat (their description has not expired)."""
        return await self.broker.run(self.ops.workers())
