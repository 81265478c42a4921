"""The ledger: every attempt's start and end, written by the handlers to a second Redis.

The ledger server is never faulted and the proxy never sits in front of it, so killing
or restarting the Redis under test cannot erase the evidence of what ran. Entries are
JSON lines in one list per scenario run.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cache

import orjson
import redis

from conveyor import TaskContext

#: Environment of the worker subprocesses: where their handlers write.
LEDGER_URL_ENV = "CHAOS_LEDGER_URL"
LEDGER_KEY_ENV = "CHAOS_LEDGER_KEY"


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger line: an attempt of a task started or ended."""

    task_id: str
    label: str
    event: str  # "start" or "end"
    pid: int
    worker: str
    token: int
    attempt: int
    mono: float  # time.monotonic(): one clock for every process of this machine
    wall: float

    @classmethod
    def from_json(cls, raw: bytes) -> Entry:
        """Decode one stored line."""
        data = orjson.loads(raw)
        return cls(**data)


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10)


def write(ctx: TaskContext, label: str, event: str) -> None:
    """Append one entry to the ledger named by the environment (called by handlers)."""
    entry = {"task_id": ctx.task_id, "label": label, "event": event, "pid": os.getpid(),
             "worker": ctx.worker_id, "token": ctx.token, "attempt": ctx.attempt,
             "mono": time.monotonic(), "wall": time.time()}  # fmt: skip
    _client(os.environ[LEDGER_URL_ENV]).rpush(os.environ[LEDGER_KEY_ENV], orjson.dumps(entry))


def read(client: redis.Redis, key: str) -> list[Entry]:
    """Every entry of the ledger at `key`, oldest first."""
    raws: list[bytes] = client.lrange(key, 0, -1)  # type: ignore[assignment]
    return [Entry.from_json(raw) for raw in raws]
