"""Watches the Redis under test (directly, never through the proxy) while a scenario runs.

Terminal records expire after a short retention, so the observer polls often and keeps
what it saw: every task id that ever appeared, each one's states over time, its last
terminal record, and every id that ever sat in the dead-letter queue.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from conveyor.broker.keys import GlobalKeys, QueueKeys

QUEUE = "default"
TERMINAL = frozenset({"succeeded", "failed", "dead", "cancelled"})
_FIELDS = ("state", "token", "result", "reason", "crashes", "attempts")
#: Terminal records are read again every this many polls, to catch a later change.
RECHECK_EVERY = 4


@dataclass(slots=True)
class Sighting:
    """What the observer knows of one task id."""

    label: str
    states: list[str] = field(default_factory=list)  # each change of state, in order
    final: dict[str, str] | None = None  # the last terminal record seen
    terminal_at: float | None = None  # time.monotonic() it was first seen terminal

    def saw(self, record: dict[str, str], now: float) -> None:
        state = record.get("state", "")
        if not self.states or self.states[-1] != state:
            self.states.append(state)
        if state in TERMINAL:
            self.final = record
            self.terminal_at = self.terminal_at or now

    @property
    def terminal_states(self) -> set[str]:
        """Every terminal state this task was ever seen in."""
        return {s for s in self.states if s in TERMINAL}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def label_of(args: str | None) -> str:
    """The label (first argument) of a stored task, or "" if it has none."""
    try:
        decoded = orjson.loads(args) if args else []
    except orjson.JSONDecodeError:
        return ""
    return str(decoded[0]) if isinstance(decoded, list) and decoded else ""


class Observer(threading.Thread):
    """Polls every `interval` seconds until stopped."""

    def __init__(self, url: str, prefix: str, interval: float = 0.2) -> None:
        super().__init__(name="chaos-observer", daemon=True)
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
        self.keys = QueueKeys(prefix, QUEUE)
        self.registry = GlobalKeys(prefix)
        self.interval = interval
        self.seen: dict[str, Sighting] = {}
        self.dead_ids: set[str] = set()
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self._polls = 0

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                self.poll()

    def stop(self) -> None:
        """Stop polling; one last poll is left to the caller (`poll`)."""
        self.halt.set()
        if self.is_alive():
            self.join(10)

    def poll(self) -> None:
        """One look at every task record and the dead-letter queue."""
        self._polls += 1
        self._discover()
        recheck = self._polls % RECHECK_EVERY == 0
        with self.lock:
            ids = [i for i, s in self.seen.items() if recheck or s.final is None]
        pipe = self.client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hmget(self.keys.task(task_id), *_FIELDS)
        pipe.zrange(self.keys.dead, 0, -1)
        *records, dead = pipe.execute()
        now = time.monotonic()
        with self.lock:
            self.dead_ids.update(_text(d) for d in dead)
            for task_id, values in zip(ids, records, strict=True):
                if values[0] is not None:
                    record = {k: _text(v) for k, v in zip(_FIELDS, values, strict=True) if v}
                    self.seen[task_id].saw(record, now)

    def _discover(self) -> None:
        """Find task ids not seen before, and read their labels."""
        start = len(self.keys.task_prefix)
        keys = self.client.scan_iter(match=self.keys.task_prefix + "*", count=1000)
        new = [k for k in (_text(k)[start:] for k in keys) if k not in self.seen]
        if not new:
            return
        pipe = self.client.pipeline(transaction=False)
        for task_id in new:
            pipe.hget(self.keys.task(task_id), "args")
        labels = pipe.execute()
        with self.lock:
            for task_id, args in zip(new, labels, strict=True):
                if args is not None:  # else it expired meanwhile
                    self.seen[task_id] = Sighting(label_of(_text(args)))

    def unfinished(self, ids: set[str]) -> set[str]:
        """Those of `ids` not yet seen terminal."""
        with self.lock:
            return {i for i in ids if i not in self.seen or self.seen[i].final is None}

    def leftover_keys(self) -> list[str]:
        """Keys of this run that hold task state: records, and non-empty indexes."""
        left = [_text(k) for k in self.client.scan_iter(match=self.keys.task_prefix + "*")]
        k = self.keys
        for index in (k.pending, k.active, k.scheduled, k.dead):
            if self.client.zcard(index):
                left.append(index)
        return left

    def backlog(self) -> int:
        """Tasks pending, active or scheduled right now."""
        pipe = self.client.pipeline(transaction=False)
        for index in (self.keys.pending, self.keys.active, self.keys.scheduled):
            pipe.zcard(index)
        return sum(int(n) for n in pipe.execute())

    def used_memory(self) -> int:
        """Redis's used_memory, in bytes."""
        info: dict[str, Any] = self.client.info("memory")
        return int(info["used_memory"])

    def close(self) -> None:
        """Close the connection."""
        self.client.close()
