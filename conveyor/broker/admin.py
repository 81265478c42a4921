"""Sans-IO reads and administrative actions: what the Inspector does, written once.

Each method returns `Steps`: a generator that yields operations and receives their
decoded results, so the Inspector's sync and async faces run the very same logic
(`broker/steps.py`). Most take one round trip; dead-letter scans and purges take several,
each bounded in size.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from conveyor import serializers
from conveyor.broker.keys import PRIORITY_BAND
from conveyor.broker.ops import MAINTENANCE_BATCH, Op, Operations, as_text, parse_info, raw, scored
from conveyor.broker.records import QueueStats
from conveyor.broker.scripts import Call
from conveyor.broker.steps import Steps
from conveyor.errors import SerializationError, TaskConflictError, TaskNotFoundError
from conveyor.ids import is_task_id, queue_of
from conveyor.model import TaskRecord, TaskState

T = TypeVar("T")
#: What an Inspector procedure is: it yields operations and returns a T.
Procedure = Steps[Op[Any], T]

#: Most workers the registry lists at once.
MAX_WORKERS = 10_000
_STATS_WIDTH = 7  # replies per queue in queue_stats


def one(op: Op[T]) -> Procedure[T]:
    """The procedure of a single operation."""
    result: T = yield op
    return result


def command(*args: Any) -> Op[Any]:
    """One plain command whose reply is used as it comes."""
    return raw(Call.command(*args))


class Admin:
    """Queues, tasks, workers and the server: reads and administrative actions."""

    def __init__(self, ops: Operations) -> None:
        self.ops = ops
        self.keys = ops.keys

    # -- queues ----------------------------------------------------------------------

    def queue_names(self) -> Procedure[list[str]]:
        """Every queue ever enqueued to, sorted."""
        return (yield from queue_names(self.ops))

    def queue_stats(self, names: Sequence[str] | None = None) -> Procedure[list[QueueStats]]:
        """Depth per state and lag of `names` (default: every known queue), one round trip."""
        if names is None:
            names = yield from self.queue_names()
        if not names:
            return []
        calls = [Call.command("TIME")]
        for name in names:
            k = self.ops.queue_keys(name)
            calls += [
                Call.command("ZCARD", k.pending),
                Call.command("ZCARD", k.active),
                Call.command("ZCARD", k.scheduled),
                Call.command("ZCARD", k.dead),
                Call.command("EXISTS", k.paused),
                Call.command("ZRANGE", k.pending, 0, 0, "WITHSCORES"),
                Call.command("ZCARD", k.retrying),
            ]
        stats: list[QueueStats] = yield Op(calls, lambda replies: _stats(names, replies))
        return stats

    def queue(self, name: str) -> Procedure[QueueStats | None]:
        """One queue's stats, or None if nothing was ever enqueued to it."""
        known = yield command("SISMEMBER", self.keys.queues, self.ops.queue_keys(name).queue)
        if not known:
            return None
        [stats] = yield from self.queue_stats([name])
        return stats

    def set_paused(self, queue: str, paused: bool) -> Procedure[QueueStats]:
        """Pause (no worker claims from it) or resume a queue; its stats after."""
        k = self.ops.queue_keys(queue)
        change = Call.command("SET", k.paused, 1) if paused else Call.command("DEL", k.paused)
        # a queue paused before its first task is still listed, so it can be resumed
        register = Call.command("SADD", self.keys.queues, queue)
        yield Op([change, register], lambda replies: None)
        [stats] = yield from self.queue_stats([queue])
        return stats

    # -- tasks -----------------------------------------------------------------------

    def task(self, task_id: str) -> Procedure[TaskRecord | None]:
        """A task record by id, or None (unknown, expired, or not a task id)."""
        if not is_task_id(task_id):
            return None
        raw = yield command("HGETALL", self.ops.task_keys(task_id).task(task_id))
        return TaskRecord.from_hash(task_id, raw) if raw else None

    def cancel(self, task_id: str) -> Procedure[None]:
        """Cancel a pending, scheduled or retrying task.

        Raises TaskConflictError if it is active or finished, TaskNotFoundError if unknown.
        """
        if not is_task_id(task_id):
            raise TaskNotFoundError(f"no task {task_id!r}: not a task id")
        cancelled, state = yield self.ops.cancel(task_id)
        if not state:
            raise TaskNotFoundError(f"no task {task_id}")
        if not cancelled:
            raise TaskConflictError(task_id, state, "cancel")

    # -- workers and the server ------------------------------------------------------

    def workers(self) -> Procedure[list[dict[str, Any]]]:
        """Workers alive by heartbeat (the registry forgets those whose description expired)."""
        keys = [self.keys.workers, self.keys.worker_prefix]
        call = Call.script_call(self.ops.scripts["workers"], keys, [MAX_WORKERS])
        infos = yield raw(call)
        return [serializers.loads(info) for info in infos]

    def ping(self) -> Procedure[None]:
        """Redis answers (raises BrokerUnavailableError if not)."""
        yield command("PING")

    def server_time(self) -> Procedure[float]:
        """Redis' clock, in seconds since the epoch."""
        seconds, micros = yield command("TIME")
        return int(seconds) + int(micros) / 1e6

    def server_info(self) -> Procedure[dict[str, Any]]:
        """INFO all, as a dict."""
        reply = yield command("INFO", "all")
        return reply if isinstance(reply, dict) else parse_info(reply)

    def server_config(self) -> Procedure[dict[str, str]]:
        """CONFIG GET * as text; raises redis' ReplyError where CONFIG is forbidden."""
        reply = yield command("CONFIG", "GET", "*")
        items = reply.items() if isinstance(reply, dict) else _pairs(reply)
        return {as_text(k): as_text(v) for k, v in items}


def queue_names(ops: Operations) -> Procedure[list[str]]:
    """Every queue ever enqueued to, sorted."""
    members = yield command("SMEMBERS", ops.keys.queues)
    return sorted(m.decode() for m in members)


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
    ) -> Procedure[tuple[int, list[TaskRecord]]]:
        """(total, page) of the dead letters of `queues`, newest first, optionally of one
        task name. Without a name filter, one bounded read per queue; with one, a scan."""
        queues = yield from self._queues(queues)
        if task_name is not None:
            matches = [r for r in (yield from self._scan(queues)) if r.name == task_name]
            matches.sort(key=_death_order)
            return len(matches), matches[offset : offset + limit]
        if not queues:
            return 0, []
        calls = []
        for queue in queues:
            dead = self.ops.queue_keys(queue).dead
            calls += [
                Call.command("ZCARD", dead),
                Call.command("ZREVRANGE", dead, 0, offset + limit - 1, "WITHSCORES"),
            ]
        replies = yield Op(calls, lambda replies: replies)
        total = sum(int(n) for n in replies[0::2])
        newest: list[tuple[float, str, str]] = []
        for queue, entries in zip(queues, replies[1::2], strict=True):
            newest += [(-score, member.decode(), queue) for member, score in scored(entries)]
        chosen = heapq.nsmallest(offset + limit, newest)[offset:]
        records = yield self._records([(task_id, queue) for _, task_id, queue in chosen])
        return total, records

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
        self, queues: Sequence[str] | None, task_name: str | None = None
    ) -> Procedure[int]:
        """Requeue every dead letter of `queues` (of one task name, if given)."""
        queues = yield from self._queues(queues)
        records = yield from self._scan(queues)
        ids = [r.id for r in records if task_name in (None, r.name)]
        return len((yield from self.replay(ids)))

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

    def _scan(self, queues: Sequence[str]) -> Procedure[list[TaskRecord]]:
        """Every dead letter of `queues`, read in bounded pages."""
        found: list[TaskRecord] = []
        for queue in queues:
            dead = self.ops.queue_keys(queue).dead
            start = 0
            while ids := (yield command("ZRANGE", dead, start, start + MAINTENANCE_BATCH - 1)):
                found += yield self._records([(i.decode(), queue) for i in ids])
                start += len(ids)
        return found

    def _records(self, entries: list[tuple[str, str]]) -> Op[list[TaskRecord]]:
        """Records of (id, queue) entries in one round trip; a missing, corrupt or
        malformed one is shown as a placeholder, so it can still be seen and deleted."""
        readable = [(i, q) for i, q in entries if is_task_id(i)]
        calls = [Call.command("HGETALL", self.ops.task_keys(i).task(i)) for i, _ in readable]

        def decode(replies: list[Any]) -> list[TaskRecord]:
            raws = dict(zip(readable, replies, strict=True))
            return [_decode_or_placeholder(i, q, raws.get((i, q))) for i, q in entries]

        return Op(calls, decode)


def _stats(names: Sequence[str], replies: list[Any]) -> list[QueueStats]:
    seconds, micros = replies[0]
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    stats = []
    for i, name in enumerate(names):
        start = 1 + _STATS_WIDTH * i
        pending, active, scheduled, dead, paused, head, retrying = replies[
            start : start + _STATS_WIDTH
        ]
        lag = _lag(head, now_ms)
        # a retry entry outlives its task until due (a deleted record): never count more
        retrying = min(retrying, scheduled)
        stats.append(
            QueueStats(name, pending, active, scheduled, dead, bool(paused), lag, retrying)
        )
    return stats


def _lag(head: list[Any], now_ms: int) -> float:
    """Seconds the next pending task has waited; a pending score's time part is when the
    task became pending (enqueue, promotion or requeue)."""
    if not head:
        return 0.0
    score = float(head[0][1]) if isinstance(head[0], list | tuple) else float(head[1])
    return max(0.0, (now_ms - score % PRIORITY_BAND) / 1000)


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


def _pairs(flat: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
    items = iter(flat)
    return zip(items, items, strict=True)


def _chunks_by_queue(task_ids: Iterable[str]) -> Iterator[tuple[str, list[str]]]:
    """(queue, ids) in chunks a maintenance script takes in one call."""
    groups: dict[str, list[str]] = defaultdict(list)
    for task_id in task_ids:
        groups[queue_of(task_id)].append(task_id)
    for queue, ids in groups.items():
        for start in range(0, len(ids), MAINTENANCE_BATCH):
            yield queue, ids[start : start + MAINTENANCE_BATCH]
