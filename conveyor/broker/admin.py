"""Sans-IO reads and administrative actions: what the Inspector does, written once.

Each method returns `Steps`: a generator that yields operations and receives their
decoded results, so the Inspector's sync and async faces run the very same logic
(`broker/steps.py`). Most take one round trip; dead-letter scans and purges take several,
each bounded in size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from conveyor import serializers
from conveyor.broker.keys import PRIORITY_BAND
from conveyor.broker.ops import Op, Operations, as_text, parse_info, raw
from conveyor.broker.records import QueueStats
from conveyor.broker.scripts import Call
from conveyor.broker.steps import Steps
from conveyor.errors import TaskConflictError, TaskNotFoundError
from conveyor.ids import id_millis, is_task_id
from conveyor.model import TaskRecord, TaskState
from conveyor.shards import shard_index, shards_of

T = TypeVar("T")
#: What an Inspector procedure is: it yields operations and returns a T.
Procedure = Steps[Op[Any], T]

#: Most workers the registry lists at once.
MAX_WORKERS = 10_000
#: Most records `records` reads per round trip.
MAX_RECORDS = 1000
_STATS_WIDTH = 9  # replies per queue in queue_stats


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
                Call.command("LLEN", k.ready),
                Call.command("LINDEX", k.ready, 0),
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
        """Pause (no worker claims from it) or resume a queue, and every shard of a split
        queue (those its settings declare and those registered); the queue's stats after."""
        names = [queue]
        if shard_index(self.ops.queue_keys(queue).queue) == 0:
            registered = yield from self.queue_names()
            names = shards_of(queue, self.ops.settings.shards.get(queue, 1), registered)
        calls = []
        for name in names:
            k = self.ops.queue_keys(name)
            calls.append(
                Call.command("SET", k.paused, 1) if paused else Call.command("DEL", k.paused)
            )
        # a queue paused before its first task is still listed, so it can be resumed
        calls.append(Call.command("SADD", self.keys.queues, *names))
        yield Op(calls, lambda replies: None)
        [stats] = yield from self.queue_stats([queue])
        return stats

    # -- tasks -----------------------------------------------------------------------

    def task(self, task_id: str) -> Procedure[TaskRecord | None]:
        """A task record by id, or None (unknown, expired, or not a task id)."""
        if not is_task_id(task_id):
            return None
        raw = yield command("HGETALL", self.ops.task_keys(task_id).task(task_id))
        return TaskRecord.from_hash(task_id, raw) if raw else None

    def records(self, task_ids: Sequence[str]) -> Procedure[list[TaskRecord | None]]:
        """Records of many tasks in order, None where unknown, MAX_RECORDS per round trip:
        a tool following thousands of tasks (`conveyor load --wait`) pays one trip per
        thousand, not one per task."""
        found: list[TaskRecord | None] = []
        for start in range(0, len(task_ids), MAX_RECORDS):
            chunk = [i for i in task_ids[start : start + MAX_RECORDS] if is_task_id(i)]
            calls = [Call.command("HGETALL", self.ops.task_keys(i).task(i)) for i in chunk]
            hashes: list[Any] = (yield Op(calls, list)) if calls else []
            by_id = dict(zip(chunk, hashes, strict=True))
            for task_id in task_ids[start : start + MAX_RECORDS]:
                raw = by_id.get(task_id)
                found.append(TaskRecord.from_hash(task_id, raw) if raw else None)
        return found

    def cancel(self, task_id: str) -> Procedure[TaskState]:
        """Cancel a task; returns CANCELLED for one that had not started (pending,
        scheduled or retrying), CANCELLING for a running one (its worker stops it, then it
        is cancelled).

        Raises TaskConflictError if it is finished, TaskNotFoundError if unknown.
        """
        if not is_task_id(task_id):
            raise TaskNotFoundError(f"no task {task_id!r}: not a task id")
        cancelled, state = yield self.ops.cancel(task_id)
        if not state:
            raise TaskNotFoundError(f"no task {task_id}")
        if not cancelled:
            raise TaskConflictError(task_id, state, "cancel")
        running = state in (TaskState.ACTIVE, TaskState.CANCELLING)
        return TaskState.CANCELLING if running else TaskState.CANCELLED

    def run_now(self, task_id: str) -> Procedure[str]:
        """Make a delayed task or a waiting retry pending now; returns the state it had.

        Raises TaskConflictError in any other state, TaskNotFoundError if unknown.
        """
        if not is_task_id(task_id):
            raise TaskNotFoundError(f"no task {task_id!r}: not a task id")
        k = self.ops.task_keys(task_id)
        keys = [k.scheduled, k.retrying, k.pending, k.signal, k.task(task_id), k.flow_prefix,
                k.events]  # fmt: skip
        done, state = yield raw(Call.script_call(self.ops.scripts["run_now"], keys, [task_id]))
        return _acted(task_id, done, state, "retry")

    def delete_task(self, task_id: str) -> Procedure[str]:
        """Delete a task in any state but active, with its record; returns its state.

        Raises TaskConflictError if a worker holds it, TaskNotFoundError if unknown.
        """
        if not is_task_id(task_id):
            raise TaskNotFoundError(f"no task {task_id!r}: not a task id")
        k = self.ops.task_keys(task_id)
        keys = [
            k.pending,
            k.scheduled,
            k.retrying,
            k.dead,
            k.active,
            k.task(task_id),
            k.ready,
            k.flow_prefix,
            k.events,
        ]
        call = Call.script_call(self.ops.scripts["delete_task"], keys, [task_id])
        done, state = yield raw(call)
        return _acted(task_id, done, state, "delete")

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

    def server_info(self, node: str | None = None) -> Procedure[dict[str, Any]]:
        """INFO all, as a dict; `node`: of that master of a Redis Cluster."""
        reply = yield raw(Call.command("INFO", "all", node=node))
        return reply if isinstance(reply, dict) else parse_info(reply)

    def cluster_masters(self) -> Procedure[list[Shard]]:
        """The masters of a Redis Cluster and the slots each serves (empty on a standalone
        Redis, which refuses CLUSTER commands)."""
        reply = yield Op([Call.command("CLUSTER", "SLOTS")], lambda r: r[0], reads_errors=True)
        return [] if isinstance(reply, Exception) else shards(reply)

    def queue_nodes(self, names: Sequence[str]) -> Procedure[dict[str, str]]:
        """The master (host:port) serving each of `names` in a Redis Cluster; empty on a
        standalone Redis."""
        masters = yield from self.cluster_masters()
        if not masters or not names:
            return {}
        calls = [Call.command("CLUSTER", "KEYSLOT", self.ops.queue_keys(n).base) for n in names]
        slots = yield Op(calls, list)
        return {
            name: next((m.address for m in masters if m.first <= int(slot) <= m.last), "?")
            for name, slot in zip(names, slots, strict=True)
        }

    def whoami(self) -> Procedure[str]:
        """The connected ACL user's name; raises redis' ReplyError where ACL is forbidden."""
        name = yield command("ACL", "WHOAMI")
        return as_text(name)

    def server_config(self, node: str | None = None) -> Procedure[dict[str, str]]:
        """CONFIG GET * as text (`node`: of that master of a Redis Cluster); raises redis'
        ReplyError where CONFIG is forbidden."""
        reply = yield raw(Call.command("CONFIG", "GET", "*", node=node))
        items = reply.items() if isinstance(reply, dict) else pairs(reply)
        return {as_text(k): as_text(v) for k, v in items}


def queue_names(ops: Operations) -> Procedure[list[str]]:
    """Every queue ever enqueued to, sorted."""
    members = yield command("SMEMBERS", ops.keys.queues)
    return sorted(m.decode() for m in members)


def _acted(task_id: str, done: int, state: bytes, action: str) -> str:
    """The state a task had when a script acted on it, or the error it refused with."""
    if not state:
        raise TaskNotFoundError(f"no task {task_id}")
    if not done:
        raise TaskConflictError(task_id, state.decode(), action)
    return state.decode()


def _stats(names: Sequence[str], replies: list[Any]) -> list[QueueStats]:
    seconds, micros = replies[0]
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    stats = []
    for i, name in enumerate(names):
        start = 1 + _STATS_WIDTH * i
        pending, active, scheduled, dead, paused, head, retrying, ready, ready_head = replies[
            start : start + _STATS_WIDTH
        ]
        pending += ready
        lag = max(_lag(head, now_ms), _ready_lag(ready_head, now_ms))
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


def _ready_lag(head: bytes | None, now_ms: int) -> float:
    """Seconds the oldest task of the ready list has waited: only tasks just enqueued join
    it, so the time in its ULID (the producer's clock) is when it became pending."""
    if head is None:
        return 0.0
    return max(0.0, (now_ms - id_millis(head.decode())) / 1000)


def pairs(flat: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
    """(a, b), (c, d) ... of a flat reply [a, b, c, d, ...]."""
    items = iter(flat)
    return zip(items, items, strict=True)


@dataclass(frozen=True, slots=True)
class Shard:
    """A master of a Redis Cluster and one range of slots it serves."""

    address: str  #: host:port
    first: int
    last: int


def shards(reply: Any) -> list[Shard]:
    """CLUSTER SLOTS as it comes raw ([first, last, [host, port, ...], replicas...] each)
    or parsed by redis-py's cluster client ({(first, last): {"primary": (host, port)}})."""
    if isinstance(reply, dict):
        pairs = [(first, last, shard["primary"]) for (first, last), shard in reply.items()]
    else:
        pairs = [(first, last, master) for first, last, master, *_ in reply]
    found = [Shard(f"{as_text(m[0])}:{int(m[1])}", int(a), int(b)) for a, b, m in pairs]
    return sorted(found, key=lambda shard: shard.first)
