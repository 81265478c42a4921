"""Everything a scenario run leaves to judge it by, and the questions the checks ask of it.

Inputs are only evidence gathered outside Conveyor: the producers' log of each enqueue,
the ledger of every attempt, what the observer saw in Redis, and the log of faults.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from tests.chaos.cluster import Life
from tests.chaos.faults import EVERYSEC_LAG, Fault
from tests.chaos.keyspace import KeyState
from tests.chaos.ledger import Entry
from tests.chaos.observer import Sighting
from tests.chaos.producers import ACK, Enqueue
from tests.chaos.scenarios import SHORT, Scenario, Size

#: With everysec, an OS crash may lose the writes acknowledged this long before it: the
#: second fsync lags, plus slack for the AOF sampling and a late completion ack.
LOSS_WINDOW = EVERYSEC_LAG + 0.5
#: The fault kind whose every occurrence, with everysec, models an OS crash.
OS_CRASH = "redis restart"


@dataclass(slots=True)
class Evidence:
    """Everything a scenario run leaves to judge it by."""

    scenario: Scenario
    max_crashes: int
    enqueues: list[Enqueue]
    ledger: list[Entry]
    seen: dict[str, Sighting]
    dead_ids: set[str]
    faults: list[Fault]
    leftover_keys: list[KeyState]
    memory_before: int
    memory_after: int
    began: float = 0.0  # time.monotonic() when production started
    anomalies: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    size: Size = SHORT
    prefix: str = "chaos"
    #: Every worker process started, in order (a slot's later lives replace it).
    lives: list[Life] = field(default_factory=list)
    #: worker id -> when the observer first saw it registered
    registered: dict[str, float] = field(default_factory=dict)
    cached_scripts: int = 0
    starts: dict[str, list[Entry]] = field(default_factory=dict)
    ends: dict[tuple[str, int], list[Entry]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # label -> task name
    kinds_by_id: dict[str, str] = field(default_factory=dict)  # task id -> task name

    def __post_init__(self) -> None:
        starts: dict[str, list[Entry]] = defaultdict(list)
        ends: dict[tuple[str, int], list[Entry]] = defaultdict(list)
        for entry in sorted(self.ledger, key=lambda e: e.mono):
            if entry.event == "start":
                starts[entry.task_id].append(entry)
            else:
                ends[(entry.task_id, entry.token)].append(entry)
        self.starts, self.ends = dict(starts), dict(ends)
        self.kinds = {e.spec.label: e.spec.kind for e in self.enqueues}
        self.kinds_by_id = {e.task_id: e.spec.kind for e in self.enqueues if e.task_id}
        self.faults = self.faults + self._gil_stalls()

    def _gil_stalls(self) -> list[Fault]:
        """A GIL-holding run in a thread stalls its whole worker: a fault like a pause."""
        stalls = []
        for runs in self.starts.values():
            for run in runs:
                ended = self.ends.get((run.task_id, run.token))
                if self.kinds.get(run.label) == "gil" and run.attempt == 1 and ended:
                    stalls.append(Fault("gil stall", run.worker, run.mono, ended[0].mono))
        return stalls

    @property
    def acked(self) -> dict[str, Enqueue]:
        """Acknowledged enqueues by task id."""
        return {e.task_id: e for e in self.enqueues if e.outcome == ACK and e.task_id}

    def kind_of(self, task_id: str) -> str:
        """The task name behind an id, from its label, else from the enqueue that returned
        the id; "" if no producer is known to have made it."""
        sighting = self.seen.get(task_id)
        label = sighting.label if sighting else ""
        if not label and task_id in self.starts:
            label = self.starts[task_id][0].label
        return self.kinds.get(label) or self.kinds_by_id.get(task_id, "")

    @property
    def os_crashes(self) -> list[float]:
        """When an OS crash (with everysec) dropped the unsynced AOF tail; none with always."""
        if not self.scenario.loss_allowed:
            return []
        return [f.start for f in self.faults if f.kind == OS_CRASH]

    def may_be_lost(self, begin: float, end: float | None = None) -> bool:
        """True if a write made at some time in [begin, end] may have been lost: it was
        acknowledged within LOSS_WINDOW before an OS crash. Nothing else may be lost."""
        end = begin if end is None else end
        return any(cut - LOSS_WINDOW <= end and begin <= cut for cut in self.os_crashes)

    def crashed_between(self, begin: float, end: float) -> bool:
        """True if an OS crash (with everysec) happened between `begin` and `end`."""
        return any(begin <= cut <= end for cut in self.os_crashes)

    def ended(self, run: Entry) -> Entry | None:
        """The ledger end of `run`, if it ran to its end."""
        ends = self.ends.get((run.task_id, run.token))
        return ends[0] if ends else None

    def hit(self, run: Entry, after: Entry) -> bool:
        """A fault hit `run`'s worker (or every worker) while it was in flight: from a
        lease before it started (its claim) to the next claim's run, whichever started
        first (a paused worker may start a stale claim's handler after the takeover)."""
        begin = min(run.mono, after.mono) - self.scenario.lease - 1.0
        until = max(run.mono, after.mono)
        return any(f.overlaps(begin, until) for f in self.faults if f.worker in (None, run.worker))
