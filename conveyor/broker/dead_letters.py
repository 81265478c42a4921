"""Dead-letter queues: pages, filters, replays (as they were, or with a corrected payload)
and deletions, written once for the Inspector's two faces (see broker/admin.py).

Every call is bounded in size, and `queues=None` means every queue. A filter on the task
name or the error text runs in Redis (`find_dead.lua`), so no traceback crosses the wire
to be thrown away.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor import serializers
from conveyor.broker.admin import Procedure, command, pairs, queue_names
from conveyor.broker.ops import MAINTENANCE_BATCH, Op, Operations, raw, scored
from conveyor.broker.scripts import Arg, Call
from conveyor.errors import SerializationError
from conveyor.ids import is_task_id, queue_of
from conveyor.model import TaskRecord, TaskState


@dataclass(frozen=True, slots=True)
class DeadFilter:
    """Which dead letters: of a task name, whose error's type or message contains a text
    (ASCII letters compare without case), dead at least `min_age` and at most `max_age`
    seconds."""

    task_name: str | None = None
    text: str | None = None
    min_age: float | None = None
    max_age: float | None = None

    @property
    def is_empty(self) -> bool:
        """True when it matches every dead letter."""
        ages = (self.min_age, self.max_age)
        return not (self.task_name or self.text) and ages == (None, None)


NO_FILTER = DeadFilter()


class DeadLetterAdmin:
    """The dead-letter queues of a deployment; every call is bounded in size, and
    `queues=None` means every queue."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops

    def page(
        self,
        queues: Sequence[str] | None,
        *,
        offset: int = 0,
        limit: int = 50,
        task_name: str | None = None,
        where: DeadFilter = NO_FILTER,
    ) -> Procedure[tuple[int, list[TaskRecord]]]:
        """(total, page) of the dead letters of `queues` matching `where` (or of one task
        name), newest first. Unfiltered, one bounded read per queue; filtered, a scan in
        Redis that returns only the ids that match."""
        if task_name is not None:
            where = DeadFilter(task_name, where.text, where.min_age, where.max_age)
        queues = yield from self._queues(queues)
        limit = max(0, limit)  # a range to -1 would read every letter
        if not where.is_empty:
            matches = yield from self.matching(queues, where)
            chosen = matches[offset : offset + limit]
            records = yield self._records([(i, queue_of(i)) for i in chosen])
            return len(matches), records
        if not queues:
            return 0, []
        calls = []
        for queue in queues:
            dead = self.ops.queue_keys(queue).dead
            calls.append(Call.command("ZCARD", dead))
            if limit:
                calls.append(Call.command("ZREVRANGE", dead, 0, offset + limit - 1, "WITHSCORES"))
        replies = yield Op(calls, lambda replies: replies)
        if not limit:
            return sum(int(n) for n in replies), []
        total = sum(int(n) for n in replies[0::2])
        newest: list[tuple[float, str, str]] = []
        for queue, entries in zip(queues, replies[1::2], strict=True):
            newest += [(score, member.decode(), queue) for member, score in scored(entries)]
        # newest first; of two that died in the same millisecond, the later id (ULIDs sort
        # by creation), as ZREVRANGE and find_dead order them
        chosen_entries = heapq.nlargest(offset + limit, newest)[offset:]
        records = yield self._records([(task_id, queue) for _, task_id, queue in chosen_entries])
        return total, records

    def matching(self, queues: Sequence[str] | None, where: DeadFilter) -> Procedure[list[str]]:
        """Ids of the dead letters of `queues` matching `where`, newest first."""
        queues = yield from self._queues(queues)
        seconds, micros = yield command("TIME")
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        low = "-inf" if where.max_age is None else now_ms - round(where.max_age * 1000)
        high = "+inf" if where.min_age is None else now_ms - round(where.min_age * 1000)
        # Lua lowers ASCII letters only: so must the text it looks for
        text = "".join(c.lower() if c.isascii() else c for c in where.text or "")
        found: list[tuple[float, str]] = []
        # every queue's next page in one round trip, until no queue has more
        ranks = dict.fromkeys(queues, 0)
        while ranks:
            calls = []
            for queue, rank in ranks.items():
                k = self.ops.queue_keys(queue)
                argv: list[Arg] = [low, high, where.task_name or "", text, rank, MAINTENANCE_BATCH]
                calls.append(
                    Call.script_call(self.ops.scripts["find_dead"], [k.dead, k.task_prefix], argv)
                )
            replies = yield Op(calls, lambda replies: replies)
            for reply in replies:
                found += [(float(score), i.decode()) for i, score in pairs(reply[1:])]
            ranks = {q: int(r[0]) for q, r in zip(ranks, replies, strict=True) if int(r[0]) >= 0}
        found.sort(reverse=True)  # newest first, the later id first within a millisecond
        return [task_id for _, task_id in found]

    def get(self, task_id: str) -> Procedure[TaskRecord | None]:
        """A dead letter by id, or None if that id is not in its dead-letter queue."""
        if not is_task_id(task_id):
            return None
        score = yield command("ZSCORE", self.ops.task_keys(task_id).dead, task_id)
        if score is None:
            return None
        records: list[TaskRecord] = yield self._records([(task_id, queue_of(task_id))])
        return records[0]

    def replay(self, task_ids: Iterable[str]) -> Procedure[list[str]]:
        """Requeue dead letters by id (any queues); returns the ids replayed."""
        replayed: list[str] = []
        for queue, chunk in _chunks_by_queue(task_ids):
            replayed += yield self.ops.replay_dead(queue, chunk)
        return replayed

    def replay_all(
        self,
        queues: Sequence[str] | None,
        task_name: str | None = None,
        where: DeadFilter = NO_FILTER,
    ) -> Procedure[int]:
        """Requeue every dead letter of `queues` matching `where` (or of one task name)."""
        if task_name is not None:
            where = DeadFilter(task_name, where.text, where.min_age, where.max_age)
        ids = yield from self._all_ids(queues, where)
        return len((yield from self.replay(ids)))

    def replay_edited(
        self, task_id: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Procedure[bool]:
        """Requeue one dead letter with a corrected payload; False if it is not one."""
        if not is_task_id(task_id):
            return False
        k = self.ops.task_keys(task_id)
        argv = [task_id, serializers.dumps(args), serializers.dumps(kwargs)]
        keys = [k.dead, k.pending, k.signal, k.task(task_id), k.events]
        replayed = yield command_script(self.ops, "replay_edited", keys, argv)
        return bool(replayed)

    def delete_all(self, queues: Sequence[str] | None, where: DeadFilter) -> Procedure[int]:
        """Delete every dead letter of `queues` matching `where`."""
        ids = yield from self._all_ids(queues, where)
        return (yield from self.delete(ids))

    def _all_ids(self, queues: Sequence[str] | None, where: DeadFilter) -> Procedure[list[str]]:
        if not where.is_empty:
            return (yield from self.matching(queues, where))
        queues = yield from self._queues(queues)
        ids: list[str] = []
        for queue in queues:
            dead = self.ops.queue_keys(queue).dead
            start = 0
            while chunk := (yield command("ZRANGE", dead, start, start + MAINTENANCE_BATCH - 1)):
                ids += [i.decode() for i in chunk]
                start += len(chunk)
        return ids

    def delete(self, task_ids: Iterable[str]) -> Procedure[int]:
        """Delete dead letters and their records by id; returns how many were deleted."""
        deleted = 0
        for queue, chunk in _chunks_by_queue(task_ids):
            deleted += yield self.ops.delete_dead(queue, chunk)
        return deleted

    def purge(self, queues: Sequence[str] | None) -> Procedure[int]:
        """Delete every dead letter of `queues`, in bounded batches."""
        queues = yield from self._queues(queues)
        purged = 0
        for queue in queues:
            dead = self.ops.queue_keys(queue).dead
            while ids := (yield command("ZRANGE", dead, 0, MAINTENANCE_BATCH - 1)):
                purged += yield self.ops.delete_dead(queue, [i.decode() for i in ids])
        return purged

    def _queues(self, queues: Sequence[str] | None) -> Procedure[Sequence[str]]:
        return queues if queues is not None else (yield from queue_names(self.ops))

    def _records(self, entries: list[tuple[str, str]]) -> Op[list[TaskRecord]]:
        """Records of (id, queue) entries in one round trip; a missing, corrupt or
        malformed one is shown as a placeholder, so it can still be seen and deleted."""
        readable = [(i, q) for i, q in entries if is_task_id(i)]
        calls = [Call.command("HGETALL", self.ops.task_keys(i).task(i)) for i, _ in readable]

        def decode(replies: list[Any]) -> list[TaskRecord]:
            raws = dict(zip(readable, replies, strict=True))
            return [decode_or_placeholder(i, q, raws.get((i, q))) for i, q in entries]

        return Op(calls, decode)


def decode_or_placeholder(
    task_id: str, queue: str, raw: dict[bytes, bytes] | None, state: TaskState = TaskState.DEAD
) -> TaskRecord:
    """The record, or a placeholder in the `state` it was listed in, saying what is wrong,
    so it can still be seen and deleted."""
    reason = "malformed task id"
    try:
        if raw:
            return TaskRecord.from_hash(task_id, raw)
        if raw is not None:
            reason = "record missing"
    except (SerializationError, ValueError) as exc:
        reason = f"corrupt record: {exc}"
    return TaskRecord(task_id, queue, "", state, [], {}, reason=reason)


def command_script(ops: Operations, name: str, keys: list[str], argv: list[Any]) -> Op[Any]:
    """One script call whose reply is used as it comes."""
    return raw(Call.script_call(ops.scripts[name], keys, argv))


def _chunks_by_queue(task_ids: Iterable[str]) -> Iterator[tuple[str, list[str]]]:
    """(queue, ids) in chunks a maintenance script takes in one call."""
    groups: dict[str, list[str]] = defaultdict(list)
    for task_id in task_ids:
        groups[queue_of(task_id)].append(task_id)
    for queue, ids in groups.items():
        for start in range(0, len(ids), MAINTENANCE_BATCH):
            yield queue, ids[start : start + MAINTENANCE_BATCH]
