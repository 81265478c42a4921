"""Sharded queues: one logical queue split into slot-queues, so a hot queue can use the
cores of several Redis Cluster masters.

Shard 0 of `emails` is `emails` itself and shard k is `emails~k`. Each shard is a queue
of its own with its own `{hash tag}`, so the shards spread over the masters by slot, and
an unsharded queue is its own only shard: a queue can be sharded later, or given more
shards, without moving a task.

Producers place a task by its key when it has one (tasks that share a concurrency limit,
a rate limit, a unique key or an idempotency key must meet in one slot for the script
that enforces it), and in turns otherwise. Workers that serve `emails` serve every shard,
trying them in a fresh random order for each claim.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Iterable, Mapping

from conveyor.errors import ConfigurationError
from conveyor.flow import Flow
from conveyor.names import validate_queue_name
from conveyor.options import TaskOptions

#: Separates a queue's name from its shard number; queue names cannot contain it.
SHARD_MARK = "~"
#: Most shards of one queue: far more than the masters of any Cluster.
MAX_SHARDS = 256

#: This process's turn for tasks without a key; it starts anywhere, so producers that
#: start together do not all begin with shard 0.
_turns = itertools.count(random.randrange(MAX_SHARDS))


def shard_name(queue: str, index: int) -> str:
    """The name of shard `index` of `queue`."""
    return queue if index == 0 else f"{queue}{SHARD_MARK}{index}"


def shard_names(queue: str, count: int) -> tuple[str, ...]:
    """Every shard of `queue` split `count` ways, shard 0 first."""
    return tuple(shard_name(queue, index) for index in range(count))


def shards_of(queue: str, count: int, registered: Iterable[str]) -> list[str]:
    """The shards of `queue`: the `count` its settings declare and any `registered`
    beyond them (left by producers that split it more ways), shard 0 first."""
    found = {name for name in registered if logical_queue(name) == queue}
    return sorted(found | set(shard_names(queue, count)), key=shard_index)


def logical_queue(name: str) -> str:
    """The queue a shard belongs to (a queue that is no shard is its own)."""
    return name.partition(SHARD_MARK)[0]


def shard_index(name: str) -> int:
    """The number of a shard (0 for a queue that is no shard)."""
    _, mark, index = name.partition(SHARD_MARK)
    return int(index) if mark else 0


def check_shards(shards: Mapping[str, int]) -> dict[str, int]:
    """`shards` if every name is a queue that is no shard and every count is 1 to
    MAX_SHARDS; raises ConfigurationError otherwise."""
    checked = {}
    for queue, count in shards.items():
        if SHARD_MARK in queue:
            raise ConfigurationError(f"shards: {queue!r} is a shard; name its queue")
        validate_queue_name(queue)
        if not isinstance(count, int) or not 1 <= count <= MAX_SHARDS:
            raise ConfigurationError(f"shards: {queue!r} needs 1 to {MAX_SHARDS} shards")
        checked[queue] = count
    return checked


def parse_shards(text: str) -> dict[str, int]:
    """`emails:8,reports:4` as {"emails": 8, "reports": 4} (checked)."""
    shards: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        queue, colon, count = item.partition(":")
        if not colon or not count.strip().isdigit():
            raise ConfigurationError(f"shards: expected queue:count, not {item!r}")
        shards[queue.strip()] = int(count)
    return check_shards(shards)


def place(queue: str, count: int, options: TaskOptions, flow: Flow | None) -> str:
    """The shard of `queue` (split `count` ways) a task goes to: the one its key hashes
    to, so tasks that share a key meet in one slot, or the next in turn."""
    if count == 1:
        return queue
    key = affinity(options, flow)
    index = next(_turns) if key is None else zlib.crc32(key.encode())
    return shard_name(queue, index % count)


def affinity(options: TaskOptions, flow: Flow | None) -> str | None:
    """The key that decides a task's shard: its concurrency key, else its rate key, its
    unique key, its idempotency key or its fair group, the first it has.

    The limits come first: a limit holds only among the tasks of one shard, so all the
    tasks a limit counts must share it. A repeated enqueue names the same limit, so its
    idempotency or unique key meets the first one's in that shard too.
    """
    if flow is not None:
        for key in (flow.concurrency_key, flow.rate_key, flow.unique_key):
            if key is not None:
                return key
    if options.idempotency_key is not None:
        return options.idempotency_key
    return flow.group if flow is not None else None
