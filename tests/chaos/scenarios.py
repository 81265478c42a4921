"""The scenarios: what work is enqueued, which faults hit it, what must hold after.

A scenario's size is given apart (`Size`): the pytest suite runs every scenario for a few
seconds with a few hundred tasks; the soak (`python -m tests.chaos`) runs them longer.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from tests.chaos import faults
from tests.chaos.faults import FaultScript
from tests.chaos.producers import TaskSpec

#: Tasks of a scenario in the short (pytest) version; the mix's counts are for this size.
SHORT_TASKS = 250
#: Seconds of production of a scenario in the short version; the fault minimums are for it.
SHORT_WINDOW = 7.0
#: Faults that come from the task mix (poison pills, GIL holders): their number follows the
#: tasks, not the time. Every other kind recurs over the window, but a "latency" lasts it.
MIX_FAULTS = frozenset({"crash", "gil stall"})


@dataclass(frozen=True, slots=True)
class Size:
    """How much work a scenario gets: `tasks` enqueued over `window` seconds."""

    tasks: int
    window: float

    @property
    def scale(self) -> int:
        """How many times the short run's task mix this size gets."""
        return max(1, round(self.tasks / SHORT_TASKS))


@dataclass(frozen=True, slots=True)
class Mix:
    """The tasks of a scenario besides the ordinary short ones, as counts."""

    long: int = 0  # several leases long, kept alive by heartbeats
    poison: int = 0  # kill their own process
    overrun: int = 0  # run past their timeout
    gil: int = 0  # hold the GIL past the lease in a thread
    gil_process: int = 0  # the same in a child process
    #: Longest sleep of an ordinary task, in seconds.
    work_seconds: float = 0.05


@dataclass(frozen=True, slots=True)
class Scenario:
    """One chaos scenario."""

    name: str
    faults: FaultScript | None = None
    mix: Mix = field(default_factory=Mix)
    appendfsync: str = "always"
    api: bool = False  # also enqueue through `conveyor api`
    zero_duplicates: bool = False  # a duplicate execution is a failure
    loss_allowed: bool = False  # lost tasks are measured, not a failure (everysec)
    workers: int = 3
    concurrency: int = 8
    lease: float = 2.0
    shutdown_grace: float = 5.0
    #: Leases a long task lasts, and GIL tasks hold the GIL.
    long_leases: float = 2.5
    #: Each worker in its own network namespace, Redis across a veth link (netns.py).
    netns: bool = False
    #: The killed workers' tasks must come back through the reaper, far sooner than the
    #: (long) lease, and no stalled worker's task may be taken over (recovery.py); the
    #: runner waits out the reaper's restart grace before production begins.
    reaper: bool = False
    #: Fewest faults of each kind the short run must inject; a longer run needs more.
    min_faults: tuple[tuple[str, int], ...] = ()

    def fault_minimum(self, size: Size) -> dict[str, int]:
        """The fewest faults of each kind a run of `size` must inject to prove anything."""
        longer = size.window / SHORT_WINDOW
        return {
            kind: n * size.scale if kind in MIX_FAULTS
            else n if kind.startswith("latency") else max(n, math.floor(n * longer))
            for kind, n in self.min_faults
        }  # fmt: skip

    def plan(self, size: Size, rng: random.Random) -> list[TaskSpec]:
        """The tasks to enqueue, shuffled: ordinary ones fill what the mix leaves."""
        m = self.mix
        hold = self.long_leases * self.lease
        wanted: list[tuple[str, int, tuple[float, ...]]] = [
            ("work", m.long, (hold,)),
            ("poison", m.poison, ()),
            ("overrun", m.overrun, ()),
            ("gil", m.gil, (hold,)),
            ("gil_process", m.gil_process, (hold,)),
        ]
        scale = size.scale  # a longer run gets more of each
        tasks = [(name, args) for name, n, args in wanted for _ in range(n * scale)]
        for _ in range(max(0, size.tasks - len(tasks))):
            tasks.append(("work", (round(rng.uniform(0, m.work_seconds), 3),)))
        rng.shuffle(tasks)
        return [TaskSpec(f"{self.name}-{i}", name, args) for i, (name, args) in enumerate(tasks)]


SHORT = Size(SHORT_TASKS, SHORT_WINDOW)
RESTARTS = (("redis restart", 2),)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("baseline", mix=Mix(long=4), zero_duplicates=True),
    Scenario("sigkill", faults.sigkill, min_faults=(("sigkill", 2),)),
    Scenario(
        "reaper",
        faults.kill_or_stall,
        mix=Mix(work_seconds=0.2),  # a kill finds tasks in flight, idle slots take them
        lease=30.0,
        reaper=True,
        min_faults=(("sigkill", 2), ("sigstop", 2)),
    ),
    Scenario(
        "sigterm-drain",
        faults.sigterm,
        mix=Mix(long=3, work_seconds=0.5),
        zero_duplicates=True,
        shutdown_grace=10.0,
        min_faults=(("sigterm", 2),),
    ),
    Scenario(
        "sigstop-zombie", faults.sigstop, mix=Mix(work_seconds=0.3), min_faults=(("sigstop", 2),)
    ),
    Scenario("redis-restart-always", faults.redis_restart, min_faults=RESTARTS),
    Scenario(
        "redis-restart-everysec",
        faults.redis_restart,
        appendfsync="everysec",
        loss_allowed=True,
        min_faults=RESTARTS,
    ),
    Scenario("drop-all", faults.drop_all, min_faults=(("drop all", 3),)),
    Scenario(
        "blackhole", faults.blackhole, mix=Mix(work_seconds=0.3), min_faults=(("blackhole", 1),)
    ),
    Scenario(
        "latency-200ms",
        faults.latency,
        mix=Mix(long=2),
        zero_duplicates=True,
        min_faults=(("latency 200 ms", 1),),
    ),
    Scenario("poison-timeout", mix=Mix(poison=3, overrun=3), min_faults=(("crash", 9),)),
    Scenario("gil-thread", mix=Mix(gil=1), long_leases=3.0, min_faults=(("gil stall", 1),)),
    Scenario("gil-process", mix=Mix(gil_process=1), long_leases=3.0, zero_duplicates=True),
    Scenario(
        "producers-outage",
        faults.outage_mix,
        api=True,
        min_faults=(("redis restart", 2), ("drop all", 2), ("sigkill", 2)),
    ),
)


def by_name(name: str) -> Scenario:
    """The scenario called `name`."""
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise KeyError(name)
