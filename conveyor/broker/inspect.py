"""Inspector: the one read and admin API behind the CLI (and later the REST API,
dashboard and metrics). Nothing else reads the keyspace for display."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor import serializers
from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.ops import MAINTENANCE_BATCH, Op
from conveyor.broker.scripts import Call
from conveyor.errors import SerializationError
from conveyor.ids import queue_of
from conveyor.model import TaskRecord, TaskState


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Depth of one queue per state."""

    name: str
    pending: int
    active: int
    scheduled: int
    dead: int
    paused: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {s: getattr(self, s) for s in self.__slots__}


class Inspector:
    """Read and administer queues, tasks and dead letters."""

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker
        self.ops = broker.ops

    async def queue_names(self) -> list[str]:
        """Every queue ever enqueued to, sorted."""
        op: Op[list[str]] = Op(
            [Call.command("SMEMBERS", self.ops.keys.queues)],
            lambda r: sorted(m.decode() for m in r[0]),
        )
        return await self.broker.run(op)

    async def queue_stats(self, names: Sequence[str] | None = None) -> list[QueueStats]:
        """Depths of `names` (default: every known queue) in one round trip."""
        names = list(names) if names is not None else await self.queue_names()
        calls = []
        for name in names:
            k = self.ops.queue_keys(name)
            calls += [
                Call.command("ZCARD", k.pending),
                Call.command("ZCARD", k.active),
                Call.command("ZCARD", k.scheduled),
                Call.command("ZCARD", k.dead),
                Call.command("EXISTS", k.paused),
            ]
        if not calls:
            return []
        replies = await self.broker.execute(calls)
        stats = []
        for i, name in enumerate(names):
            pending, active, scheduled, dead, paused = replies[5 * i : 5 * i + 5]
            stats.append(QueueStats(name, pending, active, scheduled, dead, bool(paused)))
        return stats

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause (no worker claims from it) or resume a queue."""
        k = self.ops.queue_keys(queue)
        call = Call.command("SET", k.paused, 1) if paused else Call.command("DEL", k.paused)
        await self.broker.execute([call])

    async def task(self, task_id: str) -> TaskRecord | None:
        """A task record by id, or None."""
        return await self.broker.run(self.ops.fetch_record(task_id))

    async def cancel(self, task_id: str) -> tuple[bool, str]:
        """Cancel a task; (cancelled, state before it, "" if unknown)."""
        return await self.broker.run(self.ops.cancel(task_id))

    async def workers(self) -> list[dict[str, Any]]:
        """Workers alive by heartbeat (their description has not expired)."""
        keys = self.ops.keys
        ids = await self.broker.execute([Call.command("ZRANGE", keys.workers, 0, -1)])
        worker_ids = [i.decode() for i in ids[0]]
        if not worker_ids:
            return []
        infos = await self.broker.execute([Call.command("GET", keys.worker(w)) for w in worker_ids])
        alive = [serializers.loads(info) for info in infos if info]
        gone = [w for w, info in zip(worker_ids, infos, strict=True) if not info]
        if gone:
            await self.broker.execute([Call.command("ZREM", keys.workers, *gone)])
        return alive

    # -- dead letters ----------------------------------------------------------------

    async def dead_letters(
        self, queue: str, *, offset: int = 0, limit: int = 50, task_name: str | None = None
    ) -> tuple[int, list[TaskRecord]]:
        """(total, page) of a queue's dead letters, newest first, optionally of one task name."""
        dead = self.ops.queue_keys(queue).dead
        if task_name is None:
            total, ids = await self.broker.execute([
                Call.command("ZCARD", dead),
                Call.command("ZREVRANGE", dead, offset, offset + limit - 1),
            ])  # fmt: skip
            return int(total), await self._records([i.decode() for i in ids])
        matches: list[TaskRecord] = []
        async for record in self._scan_dead(queue):
            if record.name == task_name:
                matches.append(record)
        return len(matches), matches[offset : offset + limit]

    async def replay(self, task_ids: Iterable[str]) -> list[str]:
        """Requeue dead letters by id (any queues); returns the ids replayed."""
        replayed: list[str] = []
        for queue, ids in _by_queue(task_ids).items():
            for start in range(0, len(ids), MAINTENANCE_BATCH):
                chunk = ids[start : start + MAINTENANCE_BATCH]
                done = await self.broker.run(self.ops.replay_dead(queue, chunk))
                replayed += done
        return replayed

    async def replay_all(self, queue: str, task_name: str | None = None) -> int:
        """Requeue every dead letter of `queue` (of one task name, if given)."""
        ids = [r.id async for r in self._scan_dead(queue) if task_name in (None, r.name)]
        return len(await self.replay(ids))

    async def delete(self, task_ids: Iterable[str]) -> int:
        """Delete dead letters by id (any queues); returns how many were deleted."""
        deleted = 0
        for queue, ids in _by_queue(task_ids).items():
            for start in range(0, len(ids), MAINTENANCE_BATCH):
                chunk = ids[start : start + MAINTENANCE_BATCH]
                deleted += await self.broker.run(self.ops.delete_dead(queue, chunk))
        return deleted

    async def purge(self, queue: str) -> int:
        """Delete every dead letter of `queue`, in bounded batches."""
        dead = self.ops.queue_keys(queue).dead
        purged = 0
        while True:
            (ids,) = await self.broker.execute(
                [Call.command("ZRANGE", dead, 0, MAINTENANCE_BATCH - 1)]
            )
            if not ids:
                return purged
            purged += await self.broker.run(self.ops.delete_dead(queue, [i.decode() for i in ids]))

    async def _scan_dead(self, queue: str) -> AsyncIterator[TaskRecord]:
        """Every dead letter of `queue`, oldest first, read in bounded pages."""
        dead = self.ops.queue_keys(queue).dead
        start = 0
        while True:
            (ids,) = await self.broker.execute([
                Call.command("ZRANGE", dead, start, start + MAINTENANCE_BATCH - 1)
            ])  # fmt: skip
            if not ids:
                return
            for record in await self._records([i.decode() for i in ids]):
                yield record
            start += len(ids)

    async def _records(self, task_ids: list[str]) -> list[TaskRecord]:
        """Records of `task_ids` in one round trip; missing or corrupt ones are shown as such."""
        if not task_ids:
            return []
        calls = [Call.command("HGETALL", self.ops.task_keys(i).task(i)) for i in task_ids]
        records = []
        for task_id, raw in zip(task_ids, await self.broker.execute(calls), strict=True):
            records.append(_decode_or_placeholder(task_id, raw))
        return records


def _decode_or_placeholder(task_id: str, raw: dict[bytes, bytes]) -> TaskRecord:
    """A dead letter whose record is gone or unreadable still shows up, so it can be deleted."""
    try:
        if raw:
            return TaskRecord.from_hash(task_id, raw)
        reason = "record missing"
    except (SerializationError, ValueError) as exc:
        reason = f"corrupt record: {exc}"
    return TaskRecord(task_id, queue_of(task_id), "", TaskState.DEAD, [], {}, reason=reason)


def _by_queue(task_ids: Iterable[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for task_id in task_ids:
        groups[queue_of(task_id)].append(task_id)
    return groups
