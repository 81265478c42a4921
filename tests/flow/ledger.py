"""The ledger of the flow proofs: every run's start and end, and every kill, in one list.

Handlers append to it through their own connection. Times are `time.monotonic()`, which is
CLOCK_MONOTONIC on Linux: one clock for every process of the machine, so the runs of four
worker processes and the kills of the test can be laid on one time line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import orjson
import redis

from conveyor import TaskContext


def ledger_key(prefix: str) -> str:
    """Where the proofs' handlers and the test write (beside the keyspace under test)."""
    return f"{prefix}:flow-ledger"


@dataclass(frozen=True, slots=True)
class Entry:
    """One line: a run's start or end, or a worker process about to be killed."""

    event: str  # "start", "end", "kill" or another mark of the test
    pid: int
    mono: float
    task_id: str = ""
    key: str = ""  # the flow key the run counts against (concurrency key, group, ...)
    token: int = 0


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10)


def write(ctx: TaskContext, key: str, event: str) -> None:
    """Append a run's start or end (called by the handlers, in the worker processes)."""
    entry = {"event": event, "pid": os.getpid(), "mono": time.monotonic(),
             "task_id": ctx.task_id, "key": key, "token": ctx.token}  # fmt: skip
    client = _client(os.environ["CONVEYOR_REDIS_URL"])
    client.rpush(ledger_key(os.environ["CONVEYOR_PREFIX"]), orjson.dumps(entry))


def write_mark(client: redis.Redis, prefix: str, event: str, pid: int = 0) -> None:
    """Append a mark of the test: "kill" (see `write_kill`), or the arrival of a tenant."""
    entry = {"event": event, "pid": pid, "mono": time.monotonic()}
    client.rpush(ledger_key(prefix), orjson.dumps(entry))


def write_kill(client: redis.Redis, prefix: str, pid: int) -> None:
    """Note, just before SIGKILL, that the runs of process `pid` end now (the kernel ends
    them within the kill call; no recovery can free their slots sooner than a lease or
    the reaper's absence, a second or more later)."""
    write_mark(client, prefix, "kill", pid)


class Reader:
    """Reads a ledger incrementally: each `read()` fetches only the new entries."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.key = ledger_key(prefix)
        self.entries: list[Entry] = []
        #: ids of the tasks with a run that ended, and the runs open now by pid
        self.ended: set[str] = set()
        self.open: dict[int, set[tuple[str, int]]] = {}

    def read(self) -> list[Entry]:
        """The entries added since the last read (also kept in `entries`)."""
        raws: list[bytes] = self.client.lrange(self.key, len(self.entries), -1)  # type: ignore[assignment]
        new = [Entry(**orjson.loads(raw)) for raw in raws]
        for entry in new:
            run = (entry.task_id, entry.token)
            if entry.event == "start":
                self.open.setdefault(entry.pid, set()).add(run)
            elif entry.event == "end":
                self.open.get(entry.pid, set()).discard(run)
                self.ended.add(entry.task_id)
            elif entry.event == "kill":
                self.open.pop(entry.pid, None)
        self.entries += new
        return new


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a task: from its start to its end, or to the kill of its process."""

    task_id: str
    key: str
    token: int
    pid: int
    start: float
    end: float
    killed: bool


def runs(entries: Iterable[Entry]) -> tuple[list[Run], list[Entry]]:
    """The runs the entries tell, and the starts that have neither end nor kill.

    A kill is written just before the signal, so the killed process may still write in
    between: a run that ends there ended, and is not counted killed; a run that starts
    there was killed as it started (it ends at its start, unless its end follows).
    """
    started: dict[tuple[str, int], Entry] = {}
    done: dict[tuple[str, int], Run] = {}
    killed: set[int] = set()
    for entry in entries:
        run = (entry.task_id, entry.token)
        if entry.event == "start" and entry.pid in killed:
            done[run] = _run(entry, entry.mono, killed=True)
        elif entry.event == "start":
            started[run] = entry
        elif entry.event == "end":
            begin = started.pop(run, None) or _start_of(done[run])
            done[run] = _run(begin, entry.mono, killed=False)
        elif entry.event == "kill":
            killed.add(entry.pid)
            for each in [r for r, begin in started.items() if begin.pid == entry.pid]:
                done[each] = _run(started.pop(each), entry.mono, killed=True)
    return list(done.values()), list(started.values())


def _run(begin: Entry, end: float, *, killed: bool) -> Run:
    return Run(begin.task_id, begin.key, begin.token, begin.pid, begin.mono, end, killed)


def _start_of(run: Run) -> Entry:
    return Entry("start", run.pid, run.start, run.task_id, run.key, run.token)


def max_overlap(runs: Iterable[Run]) -> int:
    """The most runs live at one instant. On a tie an end comes first: the next run of a
    slot starts after the previous one's ack, which follows its end."""
    events = sorted([(r.start, 1) for r in runs] + [(r.end, -1) for r in runs])
    live = most = 0
    for _, step in events:
        live += step
        most = max(most, live)
    return most


def max_in_window(times: Iterable[float], width: float) -> int:
    """The most of `times` in any closed window of `width` (a sliding window)."""
    ordered = sorted(times)
    most = first = 0
    for last, t in enumerate(ordered):
        while t - ordered[first] > width:
            first += 1
        most = max(most, last - first + 1)
    return most
