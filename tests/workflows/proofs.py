"""The crash proofs of workflows: a chord and a chain run to the right result while worker
subprocesses are SIGKILLed and replaced, and every node starts exactly once.

A kill may land anywhere: in a handler, between a node's step and the enqueue of what
follows, between that enqueue and the ack. The killed worker's tasks run again (the
reaper hands them back), their steps repeat, and the idempotency keys keep each node to
one task.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from conveyor import Conveyor, chain, chord
from conveyor.broker.keys import GlobalKeys
from conveyor.canvas import Workflow
from conveyor.settings import Settings
from conveyor.workflow import WorkflowHandle
from tests.support.processes import WorkerProcess
from tests.workflows import tasks

APP = "tests.workflows.tasks:app"
#: Seconds the workers may take to start and register on a loaded machine.
START_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Size:
    """How much work a proof gets, and how many kills."""

    members: int = 60  # of the chord
    member_seconds: float = 0.2
    steps: int = 8  # of the chain
    step_seconds: float = 0.3
    workers: int = 3
    concurrency: int = 4
    kills: int = 3
    kill_every: float = 0.5
    timeout: float = 120.0


@dataclass(slots=True)
class Figures:
    """What one proof saw."""

    kills: int = 0
    seconds: float = 0.0
    state: str = ""
    #: distinct tasks that ran the callback (the chain's last step), and their runs
    distinct_runners: int = 0
    runs: int = 0
    #: tasks enqueued per task name
    enqueued: dict[str, int] = field(default_factory=dict)
    #: tasks that ran more than once (a kill hit them)
    rerun: int = 0
    violations: list[str] = field(default_factory=list)


class Fleet:
    """Worker subprocesses of the workflow app; a killer thread replaces them as it kills."""

    def __init__(self, settings: Settings, logs: Path, size: Size) -> None:
        self.settings, self.logs, self.size = settings, logs, size
        self.alive: list[WorkerProcess] = []
        self.kills = 0
        self._stop = threading.Event()
        self._killer = threading.Thread(target=self._kill_loop, daemon=True)

    def start(self) -> None:
        """Start the workers and wait until they are registered."""
        for _ in range(self.size.workers):
            self._spawn()
        app = Conveyor(settings=self.settings)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while len(app.inspector.workers()) < self.size.workers:
                assert time.monotonic() < deadline, "workers not registered in time"
                time.sleep(0.05)
        finally:
            app.close()

    def _spawn(self) -> None:
        args = ("--concurrency", str(self.size.concurrency))
        self.alive.append(WorkerProcess(self.settings, self.logs, *args, app=APP))

    def unleash(self) -> None:
        """Begin killing a random worker every `kill_every` seconds, `kills` times."""
        self._killer.start()

    def _busy(self, client: Any) -> WorkerProcess:
        """A worker running a task now (a kill of an idle one proves little), else any."""
        keys = GlobalKeys(self.settings.prefix).queue("default")
        running = client.zrange(keys.active, 0, -1)
        random.shuffle(running)
        for task_id in running:
            worker = client.hget(keys.task(task_id.decode()), "worker") or b""
            pid = worker.decode().rsplit("-", 2)[-2:][0]  # worker ids are host-pid-random
            found = next((w for w in self.alive if str(w.pid) == pid), None)
            if found is not None:
                return found
        return random.choice(self.alive)

    def _kill_loop(self) -> None:
        client = redis.Redis.from_url(self.settings.redis_url)
        try:
            self._kill(client)
        finally:
            client.close()

    def _kill(self, client: Any) -> None:
        while self.kills < self.size.kills and not self._stop.wait(self.size.kill_every):
            victim = self._busy(client)
            victim.signal(signal.SIGKILL)
            victim.wait(10)
            self.alive.remove(victim)
            self.kills += 1
            self._spawn()

    def close(self) -> None:
        """Stop killing; stop every worker."""
        self._stop.set()
        if self._killer.is_alive():
            self._killer.join(30)
        for worker in self.alive:
            worker.stop()


def run_chord(settings: Settings, logs: Path, size: Size) -> Figures:
    """A chord of `members` children under kills: the callback once, every result in order."""
    expected = [i * i for i in range(size.members)]
    members = [tasks.child.message(i, seconds=size.member_seconds) for i in range(size.members)]
    return _prove(
        settings, logs, size, chord(members, tasks.collect.message()), expected, "collect"
    )


def run_chain(settings: Settings, logs: Path, size: Size) -> Figures:
    """A chain of `steps` steps under kills: the right total, every step once."""
    steps = [tasks.start.message(0)]
    for n in range(1, size.steps):
        last = n == size.steps - 1
        steps.append(tasks.add.message(n, seconds=size.step_seconds, last=last))
    expected = sum(range(size.steps))
    return _prove(settings, logs, size, chain(*steps), expected, "last")


def _prove(
    settings: Settings, logs: Path, size: Size, workflow: Workflow, expected: object, what: str
) -> Figures:
    figures = Figures()
    app = Conveyor(settings=settings)
    fleet = Fleet(settings, logs, size)
    started = time.monotonic()
    try:
        fleet.start()
        handle = app.enqueue(workflow)
        fleet.unleash()
        result = _wait(handle, size.timeout, figures)
        figures.kills = fleet.kills
    finally:
        fleet.close()
    figures.seconds = time.monotonic() - started
    _count(app, settings, handle, what, figures)
    app.close()
    if result != expected:
        figures.violations.append(f"result {str(result)[:200]} != expected {str(expected)[:200]}")
    if figures.kills < size.kills:
        figures.violations.append(f"{figures.kills} kills, {size.kills} wanted")
    if figures.rerun == 0:  # else the kills proved nothing
        figures.violations.append("no kill hit a running task")
    if figures.distinct_runners != 1:
        figures.violations.append(f"{figures.distinct_runners} tasks ran the {what} node")
    return figures


def _wait(handle: WorkflowHandle, timeout: float, figures: Figures) -> object:
    try:
        return handle.result(timeout=timeout)
    except Exception as exc:  # reported as a violation, with the state it stopped in
        figures.violations.append(f"workflow did not succeed: {exc!r}")
        return None
    finally:
        figures.state = handle.status() or ""


def _count(
    app: Conveyor, settings: Settings, handle: WorkflowHandle, what: str, figures: Figures
) -> None:
    client: Any = redis.Redis.from_url(settings.redis_url)  # replies: bytes
    try:
        runners = [r.decode() for r in client.lrange(tasks.runs_key(settings.prefix, what), 0, -1)]
        figures.runs, figures.distinct_runners = len(runners), len(set(runners))
        keys = GlobalKeys(settings.prefix).queue("default")
        names: Counter[str] = Counter()
        for key in client.scan_iter(match=keys.task_prefix + "*", count=1000):
            name, attempts = client.hmget(key, "name", "attempts")
            names[(name or b"").decode()] += 1
            figures.rerun += int(attempts or 0) > 1
        figures.enqueued = dict(names)
    finally:
        client.close()
    view = handle.view()
    nodes = view.nodes if view else []
    task_nodes = [n for n in nodes if n.kind == "task"]
    if sum(names.values()) != len(task_nodes):
        figures.violations.append(f"{sum(names.values())} tasks for {len(task_nodes)} task nodes")
    unfinished = [n.id for n in task_nodes if n.state != "succeeded"]
    if unfinished:
        figures.violations.append(f"task nodes not succeeded: {unfinished[:10]}")
