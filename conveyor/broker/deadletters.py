"""Dead-letter administration: list, show, replay, delete and purge (part of the Inspector)."""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.ops import MAINTENANCE_BATCH
from conveyor.broker.scripts import Call
from conveyor.errors import SerializationError
from conveyor.ids import is_task_id, queue_of
from conveyor.model import TaskRecord, TaskState


class DeadLetters:
    """The dead-letter queues of a deployment; every call is bounded in size."""

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker
        self.ops = broker.ops

    async def page(
        self,
        queues: Sequence[str],
        *,
        offset: int = 0,
        limit: int = 50,
        task_name: str | None = None,
    ) -> tuple[int, list[TaskRecord]]:
        """(total, page) of the dead letters of `queues`, newest first, optionally of one
        task name. Without a name filter, one bounded read per queue; with one, a scan."""
        if task_name is not None:
            matches = [r async for r in self._scan(queues) if r.name == task_name]
            matches.sort(key=_death_order)
            return len(matches), matches[offset : offset + limit]
        calls = []
        for queue in queues:
            dead = self.ops.queue_keys(queue).dead
            calls += [
                Call.command("ZCARD", dead),
                Call.command("ZREVRANGE", dead, 0, offset + limit - 1, "WITHSCORES"),
            ]
        if not calls:
            return 0, []
        replies = await self.broker.execute(calls)
        total = sum(int(n) for n in replies[0::2])
        newest: list[tuple[float, str, str]] = []
        for queue, entries in zip(queues, replies[1::2], strict=True):
            newest += [(-score, member.decode(), queue) for member, score in _pairs(entries)]
        chosen = heapq.nsmallest(offset + limit, newest)[offset:]
        return total, await self._records([(task_id, queue) for _, task_id, queue in chosen])

    async def get(self, task_id: str) -> TaskRecord | None:
        """A dead letter by id, or None if that id is not in its dead-letter queue."""
        if not is_task_id(task_id):
            return None
        dead = self.ops.task_keys(task_id).dead
        (score,) = await self.broker.execute([Call.command("ZSCORE", dead, task_id)])
        if score is None:
            return None
        [record] = await self._records([(task_id, queue_of(task_id))])
        return record

    async def replay(self, task_ids: Iterable[str]) -> list[str]:
        """Requeue dead letters by id (any queues); returns the ids replayed."""
        replayed: list[str] = []
        for queue, ids in _by_queue(task_ids).items():
            for chunk in _chunks(ids):
                done = await self.broker.run(self.ops.replay_dead(queue, chunk))
                replayed += done
        return replayed

    async def replay_all(self, queues: Sequence[str], task_name: str | None = None) -> int:
        """Requeue every dead letter of `queues` (of one task name, if given)."""
        ids = [r.id async for r in self._scan(queues) if task_name in (None, r.name)]
        return len(await self.replay(ids))

    async def delete(self, task_ids: Iterable[str]) -> int:
        """Delete dead letters and their records by id; returns how many were deleted."""
        deleted = 0
        for queue, ids in _by_queue(task_ids).items():
            for chunk in _chunks(ids):
                deleted += await self.broker.run(self.ops.delete_dead(queue, chunk))
        return deleted

    async def purge(self, queues: Sequence[str]) -> int:
        """Delete every dead letter of `queues`, in bounded batches."""
        purged = 0
        for queue in queues:
            dead = self.ops.queue_keys(queue).dead
            while True:
                first_page = Call.command("ZRANGE", dead, 0, MAINTENANCE_BATCH - 1)
                (ids,) = await self.broker.execute([first_page])
                if not ids:
                    break
                batch = [i.decode() for i in ids]
                purged += await self.broker.run(self.ops.delete_dead(queue, batch))
        return purged

    async def _scan(self, queues: Sequence[str]) -> AsyncIterator[TaskRecord]:
        """Every dead letter of `queues`, read in bounded pages."""
        for queue in queues:
            dead = self.ops.queue_keys(queue).dead
            start = 0
            while True:
                page = Call.command("ZRANGE", dead, start, start + MAINTENANCE_BATCH - 1)
                (ids,) = await self.broker.execute([page])
                if not ids:
                    break
                for record in await self._records([(i.decode(), queue) for i in ids]):
                    yield record
                start += len(ids)

    async def _records(self, entries: list[tuple[str, str]]) -> list[TaskRecord]:
        """Records of (id, queue) entries in one round trip; a missing, corrupt or
        malformed one is shown as a placeholder, so it can still be seen and deleted."""
        readable = [(i, q) for i, q in entries if is_task_id(i)]
        calls = [Call.command("HGETALL", self.ops.task_keys(i).task(i)) for i, _ in readable]
        raws = dict(zip(readable, await self.broker.execute(calls), strict=True)) if calls else {}
        return [_decode_or_placeholder(i, q, raws.get((i, q))) for i, q in entries]


def _decode_or_placeholder(task_id: str, queue: str, raw: dict[bytes, bytes] | None) -> TaskRecord:
    reason = "malformed task id"
    try:
        if raw:
            return TaskRecord.from_hash(task_id, raw)
        if raw is not None:
            reason = "record missing"
    except (SerializationError, ValueError) as exc:
        reason = f"corrupt record: {exc}"
    return TaskRecord(task_id, queue, "", TaskState.DEAD, [], {}, reason=reason)


def _death_order(record: TaskRecord) -> float:
    return -(record.finished_at.timestamp() if record.finished_at else 0.0)


def _pairs(entries: list[Any]) -> list[tuple[bytes, float]]:
    """A raw WITHSCORES reply is flat (member, score, ...); RESP3 clients nest the pairs."""
    if entries and isinstance(entries[0], list | tuple):
        return [(member, float(score)) for member, score in entries]
    items = iter(entries)
    return [(member, float(score)) for member, score in zip(items, items, strict=True)]


def _by_queue(task_ids: Iterable[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for task_id in task_ids:
        groups[queue_of(task_id)].append(task_id)
    return groups


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[i : i + MAINTENANCE_BATCH] for i in range(0, len(ids), MAINTENANCE_BATCH)]
