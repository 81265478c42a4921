"""What a chaos run may leave in Redis, and what of it nothing explains.

After the run and the retention the whole key prefix is read, not only the task records:
a leak can hide in any key (a claim request kept for ever, an idempotency marker with
no TTL, a registry that only grows). Every key left must be one Conveyor keeps on
purpose, bounded, and a key meant to expire must have a TTL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from conveyor.broker.keys import GlobalKeys, QueueKeys
from conveyor.events import EVENTS_MAX_LEN

#: The one queue of a chaos run.
QUEUE = "default"
#: Members are read of sets, sorted sets and lists at most this long.
MEMBERS_READ = 100


@dataclass(frozen=True, slots=True)
class KeyState:
    """One key of the run's prefix as found after the run."""

    name: str
    type: str  # "string", "hash", "set", "zset", "list", ...
    ttl_ms: int  # PTTL: -1 when the key never expires
    length: int = 0  # members of a set, sorted set or list
    members: tuple[str, ...] = ()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_keyspace(client: redis.Redis, prefix: str) -> list[KeyState]:
    """Every key under `prefix`, with its type, TTL and (small) membership."""
    names = sorted({_text(k) for k in client.scan_iter(match=f"{prefix}:*", count=1000)})
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.type(name)
        pipe.pttl(name)
    replies = pipe.execute()
    keys = []
    for name, kind, ttl in zip(names, replies[0::2], replies[1::2], strict=True):
        kind = _text(kind)
        if kind == "none":  # expired between the scan and the read
            continue
        keys.append(KeyState(name, kind, int(ttl), *_members(client, name, kind)))
    return keys


def _members(client: redis.Redis, name: str, kind: str) -> tuple[int, tuple[str, ...]]:
    if kind == "set":
        return int(client.scard(name)), tuple(sorted(_text(m) for m in client.smembers(name)))
    if kind == "zset":
        return int(client.zcard(name)), tuple(_text(m) for m in client.zrange(name, 0, 99))
    if kind == "list":
        return int(client.llen(name)), tuple(_text(m) for m in client.lrange(name, 0, 99))
    if kind == "stream":
        return int(client.xlen(name)), ()
    return 0, ()


def unexplained(keys: list[KeyState], prefix: str, workers: set[str]) -> list[str]:
    """The keys nothing explains, described; `workers` are the run's worker ids."""
    g, q = GlobalKeys(prefix), QueueKeys(prefix, QUEUE)
    expiring = (g.worker_prefix, g.reaper, g.stats_prefix, q.base + "claim:", q.base + "idem:")
    # the keys that stay, each with what it may hold: a problem, or None
    lasting: dict[str, Callable[[KeyState], str | None]] = {
        g.queues: lambda k: (
            None
            if k.type == "set" and not set(k.members) - {QUEUE}
            else f"lists queues {list(k.members)}"
        ),
        g.workers: lambda k: (
            None
            if k.type == "zset" and not set(k.members) - workers
            else f"lists workers {list(k.members)} not of this run"
        ),
        q.signal: lambda k: (
            None if k.type == "list" and k.length <= 1 else f"holds {k.length} wake-ups (at most 1)"
        ),
        # capped: Redis trims whole nodes of at most 100 entries
        q.events: lambda k: (
            None
            if k.type == "stream" and k.length <= EVENTS_MAX_LEN + 100
            else f"({k.type}) holds {k.length} events"
        ),
    }
    bad = []
    for key in keys:
        if key.name.startswith(expiring):
            if key.ttl_ms < 0:  # a marker meant to expire that never will
                bad.append(f"{key.name} ({key.type}) has no TTL")
        elif key.name in lasting:
            problem = lasting[key.name](key)
            if problem:
                bad.append(f"{key.name} {problem}")
        else:  # task records, non-empty indexes, presence lists, anything else
            bad.append(f"{key.name} ({key.type}, ttl {key.ttl_ms} ms)")
    return bad
