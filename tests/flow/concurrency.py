"""Proof 1: a concurrency limit is exact across worker processes, also while they are
SIGKILLed and replaced, and a limit computed per key holds per key.

`flow.limited` allows LIMIT runs at once; `flow.per_tenant` allows PREMIUM_LIMIT runs of
the premium tenant and one of each other tenant. The ledger's runs (a killed process's
runs end at its kill) must never overlap more, every task must end succeeded, and no flow
key may be left holding a slot or a waiting task.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from conveyor import Conveyor, TaskState
from conveyor.broker.keys import GlobalKeys
from conveyor.producer import Message
from conveyor.settings import Settings
from tests.flow import ledger, tasks
from tests.flow.workers import Workers

TENANTS = (tasks.PREMIUM, "basic-1", "basic-2", "basic-3")


@dataclass(frozen=True, slots=True)
class Size:
    """How much work the proof gets."""

    tasks: int = 300  # of flow.limited
    tenant_tasks: int = 160  # of flow.per_tenant, half of them premium
    kills: int = 2
    workers: int = 4
    concurrency: int = 50
    seconds: tuple[float, float] = (0.02, 0.05)  # a run's sleep, uniform
    timeout: float = 60.0


@dataclass(slots=True)
class Figures:
    """What the run measured."""

    tasks: int = 0
    runs: int = 0
    killed_runs: int = 0
    kills: int = 0
    seconds: float = 0.0
    overlap: dict[str, int] = field(default_factory=dict)  # most runs at once, per key
    unended: int = 0  # starts with neither end nor kill
    #: runs followed by another run of their task though their process was not killed
    reruns_unkilled: int = 0
    rerun_after: list[float] = field(default_factory=list)  # kill to the next run (s), each
    not_succeeded: dict[str, int] = field(default_factory=dict)
    leftovers: dict[str, int] = field(default_factory=dict)  # flow keys not empty at the end

    def limits(self) -> dict[str, int]:
        """The limit of each key."""
        return {"limited": tasks.LIMIT} | {t: tasks.tenant_limit(t) for t in TENANTS}

    def violations(self, size: Size) -> list[str]:
        """Every way this run broke the proof."""
        found = [
            f"{key}: {self.overlap.get(key, 0)} runs at once, limit {limit}"
            for key, limit in self.limits().items()
            # over the limit breaks it; under it (never reached) would mean a wrong limit
            if self.overlap.get(key, 0) != limit
        ]
        if self.kills < size.kills or self.killed_runs < self.kills:
            found.append(f"{self.kills} kills hit {self.killed_runs} runs; {size.kills} wanted")
        if self.runs < self.tasks + self.killed_runs:
            found.append(f"{self.runs} runs of {self.tasks} tasks, {self.killed_runs} killed")
        if self.reruns_unkilled:
            found.append(f"{self.reruns_unkilled} runs were repeated without a kill")
        if self.unended:
            found.append(f"{self.unended} runs never ended")
        if self.not_succeeded:
            found.append(f"tasks not succeeded: {self.not_succeeded}")
        if self.leftovers:
            found.append(f"flow keys left: {self.leftovers}")
        return found


def messages(app: Conveyor, size: Size, rng: random.Random) -> list[Message]:
    """The proof's tasks, shuffled: each sleeps a random time of `size.seconds`."""
    limited, per_tenant = app.tasks["flow.limited"], app.tasks["flow.per_tenant"]
    low, high = size.seconds
    out = [limited.message(f"l{i}", seconds=rng.uniform(low, high)) for i in range(size.tasks)]
    for i in range(size.tenant_tasks):
        tenant = tasks.PREMIUM if i % 2 == 0 else TENANTS[1 + i // 2 % 3]
        out.append(per_tenant.message(tenant, f"t{i}", seconds=rng.uniform(low, high)))
    rng.shuffle(out)
    return out


def run(settings: Settings, logs: Path, size: Size, seed: int = 1) -> Figures:
    """Run the proof: enqueue, kill `size.kills` workers that hold runs (one at each equal
    share of the tasks ended) and start a replacement for each, then measure."""
    figures = Figures(tasks=size.tasks + size.tenant_tasks)
    args = ("--concurrency", str(size.concurrency))
    with Workers(settings, logs, *args) as workers:
        app = tasks.register(Conveyor(settings=settings))
        try:
            workers.start(size.workers)
            began = time.monotonic()
            handles = app.enqueue_many(messages(app, size, random.Random(seed)))
            reader = ledger.Reader(workers.client, settings.prefix)
            drive(workers, reader, size, figures.tasks)
            figures.seconds = time.monotonic() - began
            figures.kills = len(workers.killed)
            figures.not_succeeded = wait_succeeded(app, [h.id for h in handles], size.timeout)
            figures.leftovers = leftovers(workers, settings, figures.limits())
        finally:
            app.close()
        measure(figures, reader)
    return figures


def drive(workers: Workers, reader: ledger.Reader, size: Size, total: int) -> None:
    """Read the ledger until every task has a run that ended, killing on the way."""
    thresholds = [total * (k + 1) // (size.kills + 1) for k in range(size.kills)]
    deadline = time.monotonic() + size.timeout
    while len(reader.ended) < total:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(reader.ended)} of {total} tasks ended in {size.timeout}s")
        reader.read()
        if thresholds and len(reader.ended) >= thresholds[0]:
            victim = next((w for w in workers.alive if reader.open.get(w.pid)), None)
            if victim is not None:  # else: no worker holds a run this instant; look again
                workers.kill(victim)
                workers.start(wait=False)
                thresholds.pop(0)
        time.sleep(0.01)


def wait_succeeded(app: Conveyor, ids: list[str], timeout: float) -> dict[str, int]:
    """Wait for every task to succeed; the states of those that did not, counted."""
    deadline = time.monotonic() + timeout
    while True:
        states: dict[str, int] = defaultdict(int)
        for start in range(0, len(ids), 1000):
            for record in app.inspector.records(ids[start : start + 1000]):
                state = "gone" if record is None else str(record.state)
                if state != TaskState.SUCCEEDED:
                    states[state] += 1
        if not states or time.monotonic() > deadline:
            return dict(states)
        time.sleep(0.1)


def leftovers(workers: Workers, settings: Settings, limits: dict[str, int]) -> dict[str, int]:
    """The flow keys of the queue that still hold something once every task ended."""
    keys = GlobalKeys(settings.prefix).queue("default")
    r = workers.client
    found = {keys.held: r.scard(keys.held), keys.blocked: r.scard(keys.blocked)}
    for key in limits:
        found[keys.slots(key)] = r.scard(keys.slots(key))
        found[keys.waiting(key)] = r.llen(keys.waiting(key))
    return {name: int(n) for name, n in found.items() if n}


def measure(figures: Figures, reader: ledger.Reader) -> None:
    """The runs, the kills they suffered and their overlap per key, from the ledger."""
    reader.read()
    done, unended = ledger.runs(reader.entries)
    figures.runs = len(done) + len(unended)
    figures.unended = len(unended)
    figures.killed_runs = sum(r.killed for r in done)
    figures.reruns_unkilled = len(reruns_unkilled(done, reader.entries))
    per_key: dict[str, list[ledger.Run]] = defaultdict(list)
    for each in done:
        per_key[each.key].append(each)
    figures.overlap = {key: ledger.max_overlap(runs) for key, runs in per_key.items()}
    # how long a killed run's task waited for its next run: the lease, or the reaper
    starts = {(r.task_id, r.token): r.start for r in done}
    figures.rerun_after = sorted(
        round(starts[r.task_id, r.token + 1] - r.end, 2)
        for r in done
        if r.killed and (r.task_id, r.token + 1) in starts
    )


def reruns_unkilled(done: list[ledger.Run], entries: list[ledger.Entry]) -> list[ledger.Run]:
    """The runs that another run of their task followed though their process was never
    killed. A killed process's run may be repeated even if it ended: its end is written
    before the ack, and the kill can land in between (the ack lost, the task runs again)."""
    killed = {entry.pid for entry in entries if entry.event == "kill"}
    last: dict[str, int] = {}
    for each in done:
        last[each.task_id] = max(last.get(each.task_id, 0), each.token)
    return [r for r in done if r.token < last[r.task_id] and r.pid not in killed]
