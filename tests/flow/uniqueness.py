"""Proofs 4 and 5: a unique key under concurrent producers, and across a worker's SIGKILL.

`flow.unique` is unique per its first argument. Held: its one run waits for a gate the test
opens once every producer is done, so exactly one task may run, whatever the producers
did. Churn: short runs while the producers enqueue, so tasks of the key follow each other;
no two runs may overlap, and every id an enqueue returned must run exactly once. Crash:
the worker running the task is killed; the key stays with the task, which runs again after
recovery and releases the key when it ends.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from conveyor import Conveyor, TaskState
from conveyor.broker.keys import GlobalKeys
from conveyor.settings import Settings
from tests.flow import ledger, tasks
from tests.flow.concurrency import wait_succeeded
from tests.flow.workers import Workers
from tests.support.worker import wait_until_sync

KEY = "the-key"


@dataclass(frozen=True, slots=True)
class Size:
    """How much work the proof gets."""

    producers: int = 50
    each: int = 100  # enqueues per producer
    seconds: float = 0.0  # a run's length when not held
    timeout: float = 60.0


@dataclass(slots=True)
class Figures:
    """What the run measured."""

    enqueues: int = 0
    ids: int = 0  # distinct ids the enqueues returned
    runs: int = 0
    overlap: int = 0  # most runs of the key at once
    ran_not_once: dict[str, int] = field(default_factory=dict)  # returned id -> its runs
    not_succeeded: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # of production

    def violations(self, held: bool) -> list[str]:
        """Every way this run broke the proof (`held`: one task may have run)."""
        found = []
        if held and (self.ids != 1 or self.runs != 1):
            found.append(f"{self.ids} tasks and {self.runs} runs while one was live")
        if not held and self.ids < 2:
            found.append("one task only: the runs never followed each other")
        if self.overlap > 1:
            found.append(f"{self.overlap} runs of the key at once")
        if self.ran_not_once:
            found.append(f"ids that did not run exactly once: {self.ran_not_once}")
        if self.not_succeeded:
            found.append(f"tasks not succeeded: {self.not_succeeded}")
        return found


def produce(app: Conveyor, size: Size) -> list[str]:
    """Every producer thread enqueues KEY `size.each` times, all starting together; the
    ids the enqueues returned."""
    unique, start = app.tasks["flow.unique"], threading.Barrier(size.producers)
    returned: list[list[str]] = [[] for _ in range(size.producers)]

    def producer(mine: list[str]) -> None:
        start.wait()
        mine += [unique.enqueue(KEY, seconds=size.seconds).id for _ in range(size.each)]

    threads = [threading.Thread(target=producer, args=(ids,)) for ids in returned]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [task_id for ids in returned for task_id in ids]


def run(settings: Settings, logs: Path, size: Size, *, held: bool) -> Figures:
    """Run the proof with one worker: held (the gate opens after production) or churn."""
    figures = Figures()
    with Workers(settings, logs) as workers:
        app = tasks.register(Conveyor(settings=settings))
        try:
            workers.start()
            began = time.monotonic()
            if held:  # the run holds until the gate opens: only its start may come first
                unique = app.tasks["flow.unique"]
                first = unique.enqueue(KEY, hold=True)
                wait_until_sync(lambda: read_runs(workers, settings) == 1, 30, "the held run")
                returned = [first.id, *produce(app, size)]
                workers.client.set(tasks.gate_key(settings.prefix, KEY), 1)
            else:
                returned = produce(app, size)
            figures.seconds = time.monotonic() - began
            ids = sorted(set(returned))
            figures.not_succeeded = wait_succeeded(app, ids, size.timeout)
        finally:
            app.close()
        figures.enqueues, figures.ids = len(returned), len(ids)
        measure(figures, ledger.Reader(workers.client, settings.prefix), ids)
    return figures


def read_runs(workers: Workers, settings: Settings) -> int:
    """Runs started so far."""
    entries = ledger.Reader(workers.client, settings.prefix).read()
    return sum(e.event == "start" for e in entries)


def measure(figures: Figures, reader: ledger.Reader, ids: list[str]) -> None:
    """Runs per id and their overlap, from the ledger."""
    reader.read()
    done, unended = ledger.runs(reader.entries)
    figures.runs = len(done) + len(unended)
    figures.overlap = ledger.max_overlap(done) if not unended else len(unended) + 1
    per_id = Counter(e.task_id for e in reader.entries if e.event == "start")
    figures.ran_not_once = {i: per_id[i] for i in {*ids, *per_id} if per_id[i] != 1}


@dataclass(slots=True)
class CrashFigures:
    """What the crash run measured."""

    task_id: str = ""
    during_crash: str = ""  # the id an enqueue returned while the killed run was unrecovered
    during_rerun: str = ""  # ... and while the second run was active
    tokens: list[int] = field(default_factory=list)  # the runs' fencing tokens
    recovered_in: float = 0.0  # kill to the second start (s)
    state: str = ""  # of the task at the end
    held_after: str | None = ""  # the key's holder once the task ended
    after: str = ""  # the id an enqueue returned after that
    after_state: str = ""
    held_at_last: str | None = ""

    def violations(self) -> list[str]:
        """Every way this run broke the proof."""
        found = []
        if not self.task_id == self.during_crash == self.during_rerun:
            found.append(f"the key left {self.task_id}: {self.during_crash}, {self.during_rerun}")
        if self.tokens != [1, 2] or self.state != TaskState.SUCCEEDED:
            found.append(f"runs of tokens {self.tokens}, ended {self.state}")
        if self.held_after is not None or self.held_at_last is not None:
            found.append(f"the key still held by {self.held_after} / {self.held_at_last}")
        if self.after in ("", self.task_id) or self.after_state != TaskState.SUCCEEDED:
            found.append(f"the enqueue after made {self.after} ({self.after_state})")
        return found


def crash(settings: Settings, logs: Path, timeout: float = 60.0) -> CrashFigures:
    """SIGKILL the worker of a held unique task, recover it with another, measure."""
    figures = CrashFigures()
    lock = GlobalKeys(settings.prefix).queue("default").unique(f"flow.unique:{KEY}")
    with Workers(settings, logs) as workers:
        app = tasks.register(Conveyor(settings=settings))
        unique, r = app.tasks["flow.unique"], workers.client
        try:
            [first] = workers.start()
            figures.task_id = unique.enqueue(KEY, hold=True).id
            wait_until_sync(lambda: read_runs(workers, settings) == 1, timeout, "the first run")
            workers.kill(first)
            killed_at = time.monotonic()
            figures.during_crash = unique.enqueue(KEY).id
            workers.start()
            wait_until_sync(lambda: read_runs(workers, settings) == 2, timeout, "the second run")
            figures.recovered_in = time.monotonic() - killed_at
            figures.during_rerun = unique.enqueue(KEY).id
            r.set(tasks.gate_key(settings.prefix, KEY), 1)
            figures.state = final_state(app, figures.task_id, timeout)
            figures.held_after = _holder(r.get(lock))
            figures.after = unique.enqueue(KEY).id
            figures.after_state = final_state(app, figures.after, timeout)
            figures.held_at_last = _holder(r.get(lock))
        finally:
            app.close()
        entries = ledger.Reader(r, settings.prefix).read()
        figures.tokens = [
            e.token for e in entries if e.event == "start" and e.task_id == figures.task_id
        ]
    return figures


def final_state(app: Conveyor, task_id: str, timeout: float) -> str:
    """The task's state once it ended (or whatever it is after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        record = app.get_record(task_id)
        state = "gone" if record is None else str(record.state)
        if (record is not None and record.state.is_terminal) or time.monotonic() > deadline:
            return state
        time.sleep(0.02)


def _holder(value: object) -> str | None:
    return value.decode() if isinstance(value, bytes) else None
