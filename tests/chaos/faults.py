"""Fault scripts: generators that inject one kind of fault while the producers run.

A script yields how many seconds to wait before its next step; the runner resumes it
while it keeps supervising the workers, so a SIGKILLed worker is restarted even in the
middle of a script. Closing a script (GeneratorExit) heals whatever it left broken.
Every fault is logged with the worker it hit (None: all of them) and when it began and
healed, which is what explains a duplicate execution later.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

from conveyor.tools.embedded import RedisServer
from conveyor.worker.reaper import ABSENCE
from tests.chaos.aof import AofTail
from tests.chaos.cluster import Fleet, WorkerSlot
from tests.chaos.netns import Network
from tests.chaos.proxy import ChaosProxy

#: A fault script: given the run, a generator of waits (seconds) between its steps.
Steps = Generator[float, None, None]
FaultScript = Callable[["Chaos"], Steps]
#: Seconds of acknowledged writes an everysec Redis may hold unsynced (fsync once a second).
EVERYSEC_LAG = 1.0
#: Seconds into production of the first fault: the short run is only a few seconds long,
#: and each kind of fault must hit it several times.
FIRST_FAULT = 0.5


@dataclass(slots=True)
class Fault:
    """One injected (or observed) fault; `worker` None means every process was hit."""

    kind: str
    worker: str | None
    start: float  # time.monotonic()
    end: float | None = None  # when it healed; None while it lasts

    def overlaps(self, begin: float, until: float) -> bool:
        """True if the fault was under way at some time in [begin, until]."""
        return self.start <= until and (self.end if self.end is not None else until) >= begin


@dataclass(slots=True)
class Chaos:
    """What a fault script may touch, and where it logs what it did."""

    fleet: Fleet
    proxy: ChaosProxy
    redis: RedisServer
    lease: float
    #: Every fault heals by then, a while before the producers finish, so there is still
    #: work whose resumption can be measured after each of them.
    quiet_until: float
    rng: random.Random
    #: With everysec, what an OS crash loses: the AOF tail written since the last fsync.
    aof: AofTail | None = None
    #: Whether a worker has started (registered): faults hit only running workers, not
    #: one still importing its modules (SIGTERM would kill it before its handlers exist).
    ready: Callable[[str], bool] = lambda worker_id: True
    faults: list[Fault] = field(default_factory=list)
    #: The workers' network namespaces, in a scenario that has them (partitions.py).
    network: Network | None = None
    #: Called when the Redis under test is back after a restart (a new memory baseline).
    restarted: Callable[[], None] = lambda: None

    def pick(self, besides: frozenset[str] = frozenset()) -> WorkerSlot | None:
        """A random worker that runs, is not already on its way out, nor in `besides`."""
        live = [slot for slot in self.fleet.live()
                if self.ready(slot.worker_id) and slot.worker_id not in besides]  # fmt: skip
        return self.rng.choice(live) if live else None

    def injecting(self, lasting: float = 0.0) -> bool:
        """True while a fault started now and lasting `lasting` seconds heals in time."""
        return time.monotonic() + lasting < self.quiet_until

    def begin(self, kind: str, worker: str | None = None) -> Fault:
        """Log a fault that starts now."""
        fault = Fault(kind, worker, time.monotonic())
        self.faults.append(fault)
        return fault

    def instant(self, kind: str, worker: str | None = None) -> None:
        """Log a fault that began and ended now (a kill, a dropped connection)."""
        self.heal(self.begin(kind, worker))

    @staticmethod
    def heal(fault: Fault) -> None:
        """Log that `fault` is over."""
        if fault.end is None:
            fault.end = time.monotonic()


def no_faults(chaos: Chaos) -> Steps:
    """The baseline: nothing is injected."""
    yield from ()


def signal_one(
    chaos: Chaos, signum: signal.Signals, kind: str, besides: frozenset[str] = frozenset()
) -> None:
    """Send `signum` to a random live worker not in `besides`, and log it."""
    slot = chaos.pick(besides=besides)
    if slot is not None:
        chaos.fleet.signal(slot, signum)
        chaos.instant(kind, slot.worker_id)


def sigkill(chaos: Chaos, period: float = 1.5) -> Steps:
    """SIGKILL a random worker every `period` seconds (the runner restarts it)."""
    yield FIRST_FAULT
    while chaos.injecting():
        signal_one(chaos, signal.SIGKILL, "sigkill")
        yield period * chaos.rng.uniform(0.7, 1.3)


def sigterm(chaos: Chaos, period: float = 1.5) -> Steps:
    """SIGTERM a random worker under load: it drains and exits; the runner restarts it."""
    yield FIRST_FAULT
    while chaos.injecting():
        signal_one(chaos, signal.SIGTERM, "sigterm")
        yield period * chaos.rng.uniform(0.7, 1.3)


def sigstop(chaos: Chaos, leases: float = 1.5, period: float = 1.0) -> Steps:
    """Every `period` seconds SIGSTOP another worker for `leases` leases (others take its
    tasks over), then SIGCONT: the zombie wakes up holding work that is no longer its
    own. Pauses overlap, but one worker at least always runs."""
    yield FIRST_FAULT
    paused: dict[str, tuple[float, Fault, WorkerSlot]] = {}
    next_pause = time.monotonic()
    try:
        while paused or chaos.injecting():
            now = time.monotonic()
            for worker_id, (until, fault, slot) in list(paused.items()):
                if now >= until:
                    _resume(chaos, slot, fault)
                    del paused[worker_id]
            room = len(paused) < len(chaos.fleet.slots) - 1
            if room and now >= next_pause and chaos.injecting(leases * chaos.lease):
                pause = _pause(chaos, frozenset(paused), leases * chaos.lease)
                if pause is not None:
                    paused[pause[2].worker_id] = pause
                    next_pause = now + period
            yield 0.05
    finally:
        for _, fault, slot in paused.values():
            _resume(chaos, slot, fault)


def _pause(
    chaos: Chaos, besides: frozenset[str], seconds: float
) -> tuple[float, Fault, WorkerSlot] | None:
    """SIGSTOP a worker not in `besides`: (when to resume it, its fault, its slot)."""
    slot = chaos.pick(besides=besides)
    if slot is None:
        return None
    fault = chaos.begin("sigstop", slot.worker_id)
    with contextlib.suppress(ProcessLookupError):
        os.kill(slot.process.pid, signal.SIGSTOP)
    return time.monotonic() + seconds, fault, slot


def _resume(chaos: Chaos, slot: WorkerSlot, fault: Fault) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(slot.process.pid, signal.SIGCONT)
    chaos.heal(fault)


def kill_or_stall(chaos: Chaos, period: float = 3.0, stall: float = 3 * ABSENCE) -> Steps:
    """SIGKILL a random worker every `period` seconds while, one after another, others are
    SIGSTOPped for `stall` seconds (several of the reaper's absence windows, far less than
    the lease) and SIGCONTed: the reaper must tell the dead from the stalled. A stopped
    worker is not killed, and kills are far enough apart that a worker is always free to
    run what the reaper takes back (what is timed is the reaper, not a restarting fleet)."""
    yield FIRST_FAULT
    stopped: tuple[float, Fault, WorkerSlot] | None = None
    next_kill = time.monotonic()
    try:
        while stopped is not None or chaos.injecting():
            now = time.monotonic()
            if stopped is not None and now >= stopped[0]:
                _resume(chaos, stopped[2], stopped[1])
                stopped = None
            besides = frozenset({stopped[2].worker_id}) if stopped else frozenset()
            if now >= next_kill and chaos.injecting():
                signal_one(chaos, signal.SIGKILL, "sigkill", besides)
                next_kill = now + period * chaos.rng.uniform(0.8, 1.2)
            if stopped is None and chaos.injecting(stall):
                stopped = _pause(chaos, besides, stall)
            yield 0.05
    finally:
        if stopped is not None:
            _resume(chaos, stopped[2], stopped[1])


def redis_restart(chaos: Chaos, down: float = 1.0, period: float = 1.0) -> Steps:
    """kill -9 the Redis under test, then start it again on the same port and data dir."""
    yield FIRST_FAULT
    while chaos.injecting(down):
        yield from restart_once(chaos, down)
        yield period


def restart_once(chaos: Chaos, down: float) -> Steps:
    """One kill -9 of Redis, `down` seconds of outage, and the restart. With everysec it
    is an OS crash: the last second of the AOF, never fsynced, is lost (see aof.py)."""
    fault = chaos.begin("redis restart")
    try:
        chaos.redis.kill()
        if chaos.aof is not None:
            chaos.aof.cut(EVERYSEC_LAG)
        yield down
    finally:
        if chaos.redis.process is None:
            chaos.redis.start()
            chaos.restarted()
        chaos.heal(fault)


def drop_all(chaos: Chaos, period: float = 1.0) -> Steps:
    """Close every connection through the proxy, every `period` seconds."""
    yield FIRST_FAULT
    while chaos.injecting():
        chaos.proxy.drop_all()
        chaos.instant("drop all")
        yield period * chaos.rng.uniform(0.5, 1.5)


def blackhole(chaos: Chaos, leases: float = 1.1, rest: float = 1.0) -> Steps:
    """Swallow all traffic for `leases` leases (longer than a lease: every lease held when
    it began runs out), then heal, and leave `rest` leases before the next: a task caught
    by `max_crashes` outages in a row is dead-lettered as a poison pill, by design."""
    yield FIRST_FAULT
    while chaos.injecting(leases * chaos.lease):
        fault = chaos.begin("blackhole")
        try:
            chaos.proxy.blackhole()
            yield leases * chaos.lease
        finally:
            chaos.proxy.normal()
            chaos.heal(fault)
        yield rest * chaos.lease


def latency(chaos: Chaos, seconds: float = 0.2) -> Steps:
    """Add `seconds` to every chunk in each direction for the whole production."""
    fault = chaos.begin(f"latency {seconds * 1000:.0f} ms")
    try:
        chaos.proxy.latency(seconds)
        while chaos.injecting():
            yield 0.5
    finally:
        chaos.proxy.normal()
        chaos.heal(fault)


def outage_mix(chaos: Chaos, down: float = 1.0, gap: float = 0.5) -> Steps:
    """What producers must ride out: Redis down for `down` seconds, every connection
    dropped, a worker killed; repeated."""
    yield FIRST_FAULT
    while chaos.injecting(down):
        yield from restart_once(chaos, down)
        yield gap
        chaos.proxy.drop_all()
        chaos.instant("drop all")
        yield gap
        signal_one(chaos, signal.SIGKILL, "sigkill")
        yield gap
