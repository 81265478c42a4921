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
from conveyor.broker.scripts import load_scripts
from tests.chaos.keyspace import QUEUE, KeyState, read_keyspace

TERMINAL = frozenset({"succeeded", "failed", "dead", "cancelled"})
_FIELDS = ("state", "token", "result", "reason", "crashes", "attempts")
#: Terminal records are read again every this many polls, to catch a later change.
RECHECK_EVERY = 4
#: Two memory reads this close (bytes) mean Redis' accounting has settled ...
SETTLED = 8 * 1024
#: ... and this many reads at most are made waiting for it.
SETTLE_READS = 25


@dataclass(slots=True)
class Sighting:
    """What the observer knows of one task id."""

    label: str
    states: list[str] = field(default_factory=list)  # each change of state, in order
    final: dict[str, str] | None = None  # the last terminal record seen
    terminal_at: float | None = None  # time.monotonic() it was first seen terminal
    changed: list[float] = field(default_factory=list)  # when each of `states` was seen
    #: The most crashes (leases taken back) its record ever showed.
    crashes: int = 0

    def saw(self, record: dict[str, str], now: float) -> None:
        state = record.get("state", "")
        if not self.states or self.states[-1] != state:
            self.states.append(state)
            self.changed.append(now)
        crashes = record.get("crashes", "0")
        self.crashes = max(self.crashes, int(crashes) if crashes.isdigit() else 0)
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
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
        self.keys = QueueKeys(prefix, QUEUE)
        self.registry = GlobalKeys(prefix)
        self.interval = interval
        self.seen: dict[str, Sighting] = {}
        self.dead_ids: set[str] = set()
        #: worker id -> time.monotonic() it was first seen registered
        self.workers: dict[str, float] = {}
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
        pipe.zrange(self.registry.workers, 0, -1)
        *records, dead, workers = pipe.execute()
        now = time.monotonic()
        with self.lock:
            self.dead_ids.update(_text(d) for d in dead)
            for worker in workers:
                self.workers.setdefault(_text(worker), now)
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

    def keyspace(self) -> list[KeyState]:
        """Every key of this run left in Redis."""
        return read_keyspace(self.client, self.keys.prefix)

    def backlog(self) -> int:
        """Tasks pending, active or scheduled right now."""
        pipe = self.client.pipeline(transaction=False)
        for index in (self.keys.pending, self.keys.active, self.keys.scheduled):
            pipe.zcard(index)
        pipe.llen(self.keys.ready)
        return sum(int(n) for n in pipe.execute())

    def load_scripts(self) -> None:
        """Cache every Conveyor script in Redis, as the run will: each costs memory, so
        a baseline taken before some of them were loaded would be too low. A connection
        of its own carries them, and its buffers go with it."""
        with redis.Redis.from_url(self.url, socket_timeout=2) as loader:
            pipe = loader.pipeline(transaction=False)
            for script in load_scripts().values():
                pipe.script_load(script.source)
            pipe.execute()

    def memory(self, *, without_keys: bool = False) -> int:
        """Redis' used_memory less its clients' (about 24 KiB a connection, come and gone
        with them); `without_keys` leaves this run's keys out too, for the baseline of a
        server that has just loaded them from its AOF."""
        info: dict[str, Any] = self.client.info("memory")
        held = int(info["used_memory"]) - int(info["mem_clients_normal"])
        if without_keys:
            pipe = self.client.pipeline(transaction=False)
            for key in self.client.scan_iter(match=f"{self.keys.prefix}:*", count=1000):
                pipe.memory_usage(key, samples=0)
            held -= sum(int(n or 0) for n in pipe.execute())
        return held

    def drop_events(self) -> None:
        """Delete the queue's event stream once the leftover keys were read: it is kept on
        purpose, bounded by its cap (which the leftover check holds it to), so memory is
        judged without it (MEMORY USAGE of a stream reads a third low: no subtracting)."""
        self.client.delete(self.keys.events)

    def settled_memory(self, *, without_keys: bool = False) -> int:
        """`memory()` once two reads agree: Redis counts a new client's memory as its
        clients' only on its next pass over them."""
        last = self.memory(without_keys=without_keys)
        for _ in range(SETTLE_READS):
            time.sleep(self.interval)
            now = self.memory(without_keys=without_keys)
            if abs(now - last) <= SETTLED:
                return now
            last = now
        return last

    def cached_scripts(self) -> int:
        """Scripts in Redis' script cache (a script built per call would grow it)."""
        info: dict[str, Any] = self.client.info("memory")
        return int(info.get("number_of_cached_scripts", 0))

    def uptime(self) -> int:
        """Seconds the Redis under test has run."""
        return int(self.client.info("server")["uptime_in_seconds"])

    def close(self) -> None:
        """Close the connection."""
        self.client.close()
