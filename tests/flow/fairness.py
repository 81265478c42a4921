"""Proof 3: fair groups. Tenant A enqueues a backlog, then tenant B a few tasks; B's tasks
start before A's `within`-th start after B's arrival, not after A's backlog.

Arrival is written to the ledger just before B's enqueue, so every A start from then on
counts against B (also those that B's enqueue could not yet have overtaken).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from conveyor import Conveyor
from conveyor.settings import Settings
from tests.flow import ledger, tasks
from tests.flow.workers import Workers

#: Tasks of A enqueued per round trip.
BATCH = 1000


@dataclass(frozen=True, slots=True)
class Size:
    """How much work the proof gets."""

    a_tasks: int = 10_000
    b_tasks: int = 10
    within: int = 100  # B's last start comes before A's within-th start after arrival
    concurrency: int = 10
    timeout: float = 60.0


@dataclass(slots=True)
class Figures:
    """What the run measured."""

    a_before: int = 0  # A's starts before B's arrival
    a_between: int = 0  # A's starts after B's arrival, before B's last start
    b_started: int = 0
    b_wait_ms: float = 0.0  # from B's arrival to its last start
    a_left: int = 0  # A's tasks not started when B's last started

    def violations(self, size: Size) -> list[str]:
        """Every way this run broke the proof."""
        found = []
        if self.b_started != size.b_tasks:
            found.append(f"{self.b_started} of B's {size.b_tasks} tasks started")
        if self.a_between >= size.within:
            found.append(f"B's last start came after A's {self.a_between}th since its arrival")
        if self.a_left < size.within:  # else A's backlog was gone: nothing to prove
            found.append(f"only {self.a_left} of A's tasks were left when B's last started")
        return found


def run(settings: Settings, logs: Path, size: Size) -> Figures:
    """Run the proof: a worker running, A's backlog, then B's tasks; measure B's starts."""
    with Workers(settings, logs, "--concurrency", str(size.concurrency)) as workers:
        app = tasks.register(Conveyor(settings=settings))
        try:
            workers.start()
            grouped = app.tasks["flow.grouped"]
            for first in range(0, size.a_tasks, BATCH):
                last = min(first + BATCH, size.a_tasks)
                app.enqueue_many(grouped.message("A", f"a{i}") for i in range(first, last))
            ledger.write_mark(workers.client, settings.prefix, "arrive")
            app.enqueue_many(grouped.message("B", f"b{i}") for i in range(size.b_tasks))
            reader = ledger.Reader(workers.client, settings.prefix)
            wait_for_b(reader, size)
        finally:
            app.close()
    return measure(reader.entries, size)


def wait_for_b(reader: ledger.Reader, size: Size) -> None:
    """Until every task of B started."""
    deadline, started = time.monotonic() + size.timeout, 0
    while started < size.b_tasks:
        if time.monotonic() > deadline:
            raise AssertionError(f"{started} of B's tasks started in {size.timeout}s")
        time.sleep(0.02)
        started += sum(e.event == "start" and e.key == "B" for e in reader.read())


def measure(entries: list[ledger.Entry], size: Size) -> Figures:
    """Where B's starts fall among A's, in ledger order (the order of the starts)."""
    figures = Figures()
    arrived_at = 0.0
    for entry in entries:
        if entry.event == "arrive":
            arrived_at = entry.mono
        elif entry.event != "start":
            continue
        elif entry.key == "A":
            if arrived_at:
                figures.a_between += 1
            else:
                figures.a_before += 1
        elif entry.key == "B":
            figures.b_started += 1
            figures.b_wait_ms = (entry.mono - arrived_at) * 1000
            if figures.b_started == size.b_tasks:
                break
    figures.a_left = size.a_tasks - figures.a_before - figures.a_between
    return figures
