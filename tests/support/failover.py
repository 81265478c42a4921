"""A producer under load and the accounting after a failover, shared by the Sentinel and
the Redis Cluster chaos tests: which acknowledged tasks a failover lost, and which ran twice."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from conveyor import Conveyor, TaskState
from conveyor.errors import BrokerUnavailableError, NotReplicatedError
from tests.support.worker import wait_until_sync

#: Pause between two enqueues of the producer (a few hundred tasks a second).
PACE = 0.003


class Producer(threading.Thread):
    """Enqueues `note` tasks until stopped (`durable`: each confirmed by a replica); keeps
    the ids Redis acknowledged, with when."""

    def __init__(self, app: Conveyor, durable: bool = False, queue: str | None = None) -> None:
        super().__init__(daemon=True)
        self.app = app
        self.durable = durable
        self.queue = queue
        self.acked: list[tuple[float, str]] = []
        self.refused = 0
        #: durable enqueues stored but not confirmed by a replica: not acknowledged
        self.unconfirmed = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            try:
                handle = self.app.enqueue("note", n, durable=self.durable, queue=self.queue)
            except BrokerUnavailableError:
                self.refused += 1  # not acknowledged: the producer would try again
            except NotReplicatedError:
                self.unconfirmed += 1  # stored, but a failover may lose it: not acknowledged
            else:
                self.acked.append((time.monotonic(), handle.id))
            time.sleep(PACE)

    def longest_gap(self) -> float:
        """The longest time between two acknowledgements: the outage the producer saw."""
        times = [at for at, _ in self.acked]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def acked_after(self, moment: float) -> list[float]:
        """When each acknowledgement after `moment` came."""
        return [at for at, _ in self.acked if at > moment]


async def acked_since(producer: Producer, after: float, count: int) -> bool:
    return len(producer.acked_after(after)) >= count


async def accepts(api: httpx.AsyncClient) -> bool:
    response = await api.post("/task", json={"type": "note", "payload": -1})
    return response.status_code == 202


def settle(app: Conveyor, acked: list[str]) -> tuple[list[str], set[str]]:
    """Wait until every acknowledged task succeeded or has no record (lost in the
    failover); the lost ones, and the states of the others (only 'succeeded' expected)."""

    def records() -> dict[str, str | None]:
        found = {}
        for task_id in acked:
            record = app.inspector.task(task_id)
            found[task_id] = None if record is None else str(record.state)
        return found

    def settled() -> bool:
        return all(s in (None, TaskState.SUCCEEDED) for s in records().values())

    with contextlib.suppress(AssertionError):  # what is left is in the states returned
        wait_until_sync(settled, 30, "every acknowledged task to succeed or be gone")
    final = records()
    return [t for t, s in final.items() if s is None], {s for s in final.values() if s}


def run_twice(runs: Path) -> dict[str, float]:
    """Tasks the worker ran more than once, with the time of their first run."""
    lines = [line.split() for line in runs.read_text().splitlines() if line]
    counts = Counter(task_id for task_id, _ in lines)
    first: dict[str, float] = {}
    for task_id, at in lines:
        first.setdefault(task_id, float(at))
    return {t: first[t] for t, n in counts.items() if n > 1}


def account(
    title: str,
    producer: Producer,
    lost: list[str],
    states: set[str],
    runs: Path,
    fault_at: float,
    promoted_at: float,
    promoted_wall: float,
) -> None:
    """Report a failover's figures, then fail on what must never happen: a task left in
    another state than succeeded, a durable task lost, or a task first run after the
    failover run twice. A loss without `durable` is reported, not failed."""
    twice = run_twice(runs)
    late = sorted(t for t, first in twice.items() if first > promoted_wall + 0.5)
    acked = len(producer.acked)
    print(
        f"\n{title}: {acked} tasks acknowledged, {producer.unconfirmed} stored unconfirmed, "
        f"{len(lost)} lost ({len(lost) / acked:.2%}), {producer.refused} enqueues refused "
        f"during the outage, promotion {promoted_at - fault_at:.2f}s after the fault, no "
        f"enqueue acknowledged for {producer.longest_gap():.2f}s; {len(twice)} task(s) run "
        "twice (ack lost in the failover)"
    )
    assert states == {"succeeded"} or not states, states  # nothing else left unaccounted
    if producer.durable:
        assert not lost, f"durable tasks lost in the failover: {lost}"
    assert not late, f"tasks first run after the failover ran twice: {late}"
