"""Seed and read helpers of the script tests (asynq's Seed*/Get* style).

Times written by the scripts come from Redis' clock, so the tests read that clock just
before and just after an operation and expect each time within that window.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import redis

from conveyor.broker.keys import PRIORITY_BAND, QueueKeys
from conveyor.broker.records import ClaimedTask
from conveyor.broker.sync_broker import SyncBroker
from conveyor.ids import new_task_id
from conveyor.model import to_millis
from tests.support.keyspace import dump
from tests.support.worker import wait_until_sync

#: Lease of the `short_lease` app, in seconds: expires within a test, yet outlives a call.
SHORT_LEASE = 0.05
#: How a claim can go stale: re-claimed by another worker (newer token), given back to
#: pending (same token, no longer active), or completed already (a duplicate completion).
Stale = Literal["reclaimed", "released", "completed"]
STALE_WAYS: tuple[Stale, ...] = ("reclaimed", "released", "completed")


def pending_score(priority: int, at_ms: int) -> int:
    """The pending score of a task of `priority` made pending at `at_ms`."""
    return (100 - priority) * PRIORITY_BAND + at_ms


def redis_ms(r: redis.Redis) -> int:
    """Redis' clock in milliseconds, computed as the scripts compute `now`."""
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


class Between:
    """Equal to any number, or numeric string, within [lo, hi]."""

    __slots__ = ("hi", "lo")

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, int | float | str | bytes):
            return NotImplemented
        try:
            return self.lo <= float(other) <= self.hi
        except ValueError:
            return False

    def __repr__(self) -> str:
        return f"Between({self.lo:.0f}, {self.hi:.0f})"


@dataclass
class Window:
    """Redis' clock just before (`lo`) and just after (`hi`) an operation."""

    lo: int
    hi: int = 0

    def at(self, offset_ms: float = 0) -> Between:
        """The script's `now` plus `offset_ms`."""
        return Between(self.lo + offset_ms, self.hi + offset_ms)

    @property
    def now(self) -> Between:
        """The script's `now`."""
        return self.at(0)

    def pending(self, priority: int = 0) -> Between:
        """The pending score of a task of `priority` made pending by the script."""
        return Between(pending_score(priority, self.lo), pending_score(priority, self.hi))


@contextlib.contextmanager
def clock(r: redis.Redis) -> Iterator[Window]:
    """Read Redis' clock around the block; the window is complete after it."""
    window = Window(redis_ms(r))
    yield window
    window.hi = redis_ms(r)


def ttls(r: redis.Redis, prefix: str) -> dict[str, int]:
    """Remaining time to live (ms, -1 for none) of every key under `prefix`."""
    return {key: int(r.pttl(key)) for key in dump(r, prefix)}


def assert_ttls_kept(before: dict[str, int], after: dict[str, int]) -> None:
    """No expiry was set, removed or extended between the two readings."""
    assert after.keys() == before.keys()
    for key, was in before.items():
        if was == -1:
            assert after[key] == -1, key
        else:
            assert 0 < after[key] <= was, key


def assert_ttl(r: redis.Redis, key: str, seconds: float) -> None:
    """`key` expires in about `seconds` (set by the operation just run)."""
    expected = to_millis(seconds)
    assert expected - 2000 < int(r.pttl(key)) <= expected


def claim(
    broker: SyncBroker, count: int = 1, worker: str = "w1", *, queue: str = "default"
) -> list[ClaimedTask]:
    """Claim up to `count` tasks as an idle worker."""
    return broker.run(broker.ops.claim(queue, count, worker)).tasks


def claim_one(broker: SyncBroker, worker: str = "w1") -> ClaimedTask:
    """Claim the next task of the default queue; fails if there is none."""
    tasks = claim(broker, 1, worker)
    assert len(tasks) == 1
    return tasks[0]


def lose_lease(broker: SyncBroker, task: ClaimedTask, how: Stale) -> None:
    """Make `task`'s claim stale, the way `how` names."""
    if how == "completed":
        assert broker.execute([broker.ops.ack([(task, b'"first"')])]) == [[1]]
        return
    assert broker.execute([broker.ops.requeue(task, crashed=False)]) == [b"pending"]
    if how == "reclaimed":
        assert claim_one(broker, "w2").token == task.token + 1


def scores(r: redis.Redis, key: str) -> dict[str, float]:
    """Members of a sorted set with their scores, lowest first."""
    client: Any = r  # redis-py's return types are unions of every decoding mode
    return {member.decode(): score for member, score in client.zrange(key, 0, -1, withscores=True)}


def wait_leases_expired(r: redis.Redis, keys: QueueKeys, *task_ids: str) -> None:
    """Wait until the leases of `task_ids` (default: all) are past their deadline."""
    leases = scores(r, keys.active)
    deadlines = [at for i, at in leases.items() if not task_ids or i in task_ids]
    assert deadlines, "no lease to wait for"
    latest = max(deadlines)
    wait_until_sync(lambda: redis_ms(r) >= latest, timeout=5, what="leases to expire")


def wait_due(r: redis.Redis, keys: QueueKeys, *task_ids: str) -> None:
    """Wait until the scheduled tasks `task_ids` (default: all) are due on Redis' clock."""
    scheduled = scores(r, keys.scheduled)
    due = [at for i, at in scheduled.items() if not task_ids or i in task_ids]
    assert due, "no scheduled task to wait for"
    latest = max(due)
    wait_until_sync(lambda: redis_ms(r) >= latest, timeout=5, what="scheduled tasks due")


def seed_dead(r: redis.Redis, keys: QueueKeys, died_at: list[int]) -> list[str]:
    """Dead letters written by hand, one per time of death (ms); returns their ids."""
    ids = [new_task_id(keys.queue) for _ in died_at]
    pipe = r.pipeline(transaction=False)
    for task_id, at in zip(ids, died_at, strict=True):
        pipe.hset(
            keys.task(task_id),
            mapping={"name": "job", "state": "dead", "reason": "error", "finished_at": at},
        )
        pipe.zadd(keys.dead, {task_id: at})
    pipe.execute()
    return ids
