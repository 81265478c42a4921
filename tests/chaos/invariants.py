"""The invariants checked after every scenario, each a hard failure (a violation).

Inputs are only evidence gathered outside Conveyor: the producers' log of each enqueue,
the ledger of every attempt, what the observer saw in Redis, and the log of faults.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import orjson

from tests.chaos.faults import Fault
from tests.chaos.ledger import Entry
from tests.chaos.observer import TERMINAL, Sighting
from tests.chaos.producers import ACK, Enqueue
from tests.chaos.report import Report
from tests.chaos.scenarios import Scenario
from tests.chaos.tasks import OVERRUN_RETRIES

#: Every acknowledged task must end within this many seconds of its enqueue.
TERMINAL_BOUND = 60.0
#: Work must resume within this many seconds after a fault heals.
RECOVERY_BOUND = 10.0
#: The dead-letter reason each kind of task must die with; other kinds must never die.
DEAD_REASONS = {"poison": "worker lost", "overrun": "timeout"}
#: Redis memory may end this much above where it started (connections, script cache).
MEMORY_SLACK = 512 * 1024


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
    leftover_keys: list[str]
    memory_before: int
    memory_after: int
    began: float = 0.0  # time.monotonic() when production started
    anomalies: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
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


def judge(ev: Evidence) -> Report:
    """Check every invariant; the report lists each violation."""
    report = Report(ev.scenario.name, ev.scenario.appendfsync)
    count_enqueues(ev, report)
    for check in (check_lost, check_phantoms, check_terminal_records, check_duplicates,
                  check_special_tasks, check_dead_letters, check_recovery,
                  check_cleanup):  # fmt: skip
        check(ev, report)
    report.violations += ev.anomalies
    report.notes += ev.notes
    report.faults = dict(Counter(f.kind for f in ev.faults))
    report.memory_before, report.memory_after = ev.memory_before, ev.memory_after
    return report


def count_enqueues(ev: Evidence, report: Report) -> None:
    outcomes = Counter(e.outcome for e in ev.enqueues)
    report.tasks = outcomes[ACK]
    report.enqueues_failed = outcomes["failed"]
    report.enqueues_unknown = outcomes["unknown"]
    stored = {s.label for s in ev.seen.values()} | {e.label for e in ev.ledger}
    report.api_refused = sum(1 for e in ev.enqueues if e.detail.startswith("503"))
    report.stored_despite_error = sum(
        1 for e in ev.enqueues if e.outcome != ACK and e.spec.label in stored
    )


def check_lost(ev: Evidence, report: Report) -> None:
    """Every acknowledged enqueue ends succeeded, or dead with a reason."""
    lost, ran = [], 0
    for task_id, enqueue in ev.acked.items():
        sighting = ev.seen.get(task_id)
        if sighting is None or sighting.terminal_at is None:
            lost.append(f"{task_id} ({enqueue.source}, last seen {_states(sighting)})")
            ran += any((task_id, run.token) in ev.ends for run in ev.starts.get(task_id, []))
        else:
            report.slowest_s = max(report.slowest_s, sighting.terminal_at - enqueue.answered)
    report.lost = len(lost)
    if report.slowest_s > TERMINAL_BOUND:
        report.violations.append(f"a task took {report.slowest_s:.1f}s to end after its enqueue")
    if lost and not ev.scenario.loss_allowed:
        report.violations.append(f"{len(lost)} acknowledged tasks lost: {_few(lost)}")
    elif lost:
        report.notes.append(
            f"lost {len(lost)} acknowledged tasks ({ran} of them had run to their end, "
            f"but their records are gone): {_few(lost)}"
        )


def check_phantoms(ev: Evidence, report: Report) -> None:
    """No task appears that was never enqueued, and no enqueue is stored twice."""
    labels: Counter[str] = Counter(s.label for s in ev.seen.values())
    phantoms = [f"{i} label {s.label!r}" for i, s in ev.seen.items() if s.label not in ev.kinds]
    phantoms += [f"ledger {e.task_id}" for e in ev.ledger if e.label not in ev.kinds]
    if phantoms:
        report.violations.append(f"{len(phantoms)} tasks never enqueued: {_few(phantoms)}")
    twice = [label for label, n in labels.items() if n > 1]
    if twice:
        report.violations.append(f"{len(twice)} enqueues stored as two tasks: {_few(twice)}")


def check_terminal_records(ev: Evidence, report: Report) -> None:
    """None both succeeded and dead; none succeeded without its run in the ledger, or with
    a result from a stale token; dead ones have a reason; nothing else is terminal; and no
    finished task comes back to life (only data loss, with everysec, may undo an ending)."""
    bad = []
    for task_id, sighting in ev.seen.items():
        final = sighting.final
        if final is not None:
            bad += _terminal_record(ev, task_id, sighting, final)
            report.reverted += _reverted(sighting.states)
            claims = int(final.get("attempts", "0"))
            report.orphaned_claims += max(0, claims - len(ev.starts.get(task_id, [])))
    report.dead = sum(1 for s in ev.seen.values() if s.final and s.final["state"] == "dead")
    if bad:
        report.violations.append(f"{len(bad)} bad terminal records: {_few(bad)}")
    if report.orphaned_claims:
        report.notes.append(f"{report.orphaned_claims} claims never started their handler")
    if report.reverted and not ev.scenario.loss_allowed:
        report.violations.append(f"{report.reverted} finished tasks became live again")
    elif report.reverted:
        report.notes.append(f"{report.reverted} terminal records went back to a live state")


def _terminal_record(
    ev: Evidence, task_id: str, sighting: Sighting, final: dict[str, str]
) -> list[str]:
    states = sighting.terminal_states
    bad = []
    if {"succeeded", "dead"} <= states:
        bad.append(f"{task_id} both succeeded and dead")
    if states - {"succeeded", "dead"}:
        bad.append(f"{task_id} ended {sorted(states)}")
    if final["state"] == "dead" and not final.get("reason"):
        bad.append(f"{task_id} dead without a reason")
    if final["state"] == "succeeded":
        bad += _fenced(ev, task_id, final)
    return bad


def _fenced(ev: Evidence, task_id: str, final: dict[str, str]) -> list[str]:
    """A succeeded record: its token ran to its end in the ledger, its result carries that
    token, and no later claim exists (a stale completion never overwrote a newer one)."""
    token = int(final.get("token", "0"))
    result = orjson.loads(final["result"]) if final.get("result") else None
    starts = [e.token for e in ev.starts.get(task_id, [])]
    if token not in starts or (task_id, token) not in ev.ends:
        return [f"{task_id} succeeded with token {token} but no ledger run of it ended"]
    if not isinstance(result, dict) or result.get("token") != token:
        return [f"{task_id} record token {token} holds the result of {result}"]
    if max(starts) > token and not ev.scenario.loss_allowed:
        return [f"{task_id} succeeded with token {token} after a claim with {max(starts)}"]
    return []


def _reverted(states: list[str]) -> int:
    """1 if a terminal state was followed by a live one (the task was revived)."""
    first = next((i for i, s in enumerate(states) if s in TERMINAL), None)
    return int(first is not None and any(s not in TERMINAL for s in states[first + 1 :]))


def check_duplicates(ev: Evidence, report: Report) -> None:
    """Count succeeded tasks started more than once; explain each extra run by a fault."""
    unexplained = []
    for task_id, sighting in ev.seen.items():
        runs = ev.starts.get(task_id, [])
        if not sighting.final or sighting.final["state"] != "succeeded" or len(runs) < 2:
            continue
        if ev.kind_of(task_id) == "gil":
            continue  # its takeover is the guarantee, checked in check_special_tasks
        report.duplicates += 1
        for run, after in itertools.pairwise(runs):
            if not _explained(ev, run, after):
                unexplained.append(f"{task_id} run by {run.worker} at {run.mono:.2f}")
    report.unexplained = len({u.split()[0] for u in unexplained})
    report.explained = report.duplicates - report.unexplained
    if unexplained:
        report.violations.append(f"unexplained duplicate runs: {_few(unexplained)}")
    if report.duplicates and ev.scenario.zero_duplicates:
        report.violations.append(f"{report.duplicates} duplicate executions (must be none)")


def _explained(ev: Evidence, run: Entry, after: Entry) -> bool:
    """A fault that hit `run`'s worker (or every worker) while it was in flight: from a
    lease before it started (its claim) to the next run's start."""
    begin = run.mono - ev.scenario.lease - 1.0
    return any(f.overlaps(begin, after.mono) for f in ev.faults if f.worker in (None, run.worker))


def check_special_tasks(ev: Evidence, report: Report) -> None:
    """Poison pills start exactly max_crashes times and die "worker lost", harming no
    bystander for good; timeouts die "timeout"; GIL holders keep their guarantee."""
    bad: list[str] = []
    for task_id in ev.acked:
        kind, runs = ev.kind_of(task_id), ev.starts.get(task_id, [])
        final = (ev.seen[task_id].final or {}) if task_id in ev.seen else {}
        if kind == "poison":
            if len(runs) != ev.max_crashes:
                bad.append(f"poison {task_id} started {len(runs)} times")
            report.poison_bystanders += _bystanders(ev, runs, bad)
        elif kind == "overrun":
            crashes = int(final.get("crashes", "0"))
            if not OVERRUN_RETRIES + 1 <= len(runs) <= OVERRUN_RETRIES + 1 + crashes:
                bad.append(f"timeout task {task_id} started {len(runs)} times")
        elif kind in ("gil", "gil_process"):
            bad += _gil(ev, task_id, kind, runs, final)
    if bad:
        report.violations.append(f"{len(bad)} special tasks misbehaved: {_few(bad)}")


def _bystanders(ev: Evidence, poison_runs: list[Entry], bad: list[str]) -> int:
    """Tasks in flight in the process each poison run killed; each must succeed."""
    count = 0
    for run in poison_runs:
        for task_id, runs in ev.starts.items():
            for other in runs:
                in_flight = (task_id, other.token) not in ev.ends
                if other.worker == run.worker and in_flight and task_id != run.task_id:
                    count += 1
                    final = ev.seen[task_id].final if task_id in ev.seen else None
                    kind = ev.kind_of(task_id)
                    if kind == "work" and (not final or final["state"] != "succeeded"):
                        bad.append(f"bystander {task_id} of poison {run.task_id} not succeeded")
    return count


def _gil(
    ev: Evidence, task_id: str, kind: str, runs: list[Entry], final: dict[str, str]
) -> list[str]:
    """Thread: taken over (at-least-once), the stalled run's result refused.
    Process: heartbeats went on, it ran once."""
    if final.get("state") != "succeeded" or not runs:
        return [f"{kind} {task_id} ended {final.get('state')}"]
    first = runs[0]
    ended = ev.ends.get((task_id, first.token), [])
    held = ended[0].mono - first.mono if ended else 0.0
    if held < 1.5 * ev.scenario.lease:
        return [f"{kind} {task_id} held the GIL {held:.1f}s only: the test is void"]
    token = int(final.get("token", "0"))
    if kind == "gil" and (len(runs) < 2 or token == first.token):
        return [f"gil {task_id}: {len(runs)} runs, result of token {token} (expected a takeover)"]
    if kind == "gil_process" and (len(runs) != 1 or token != first.token):
        return [f"gil_process {task_id}: {len(runs)} runs (expected exactly one)"]
    return []


def check_dead_letters(ev: Evidence, report: Report) -> None:
    """The dead-letter queue holds exactly the poison pills and timeout tasks."""
    bad = []
    for task_id in ev.dead_ids:
        kind = ev.kind_of(task_id)
        final = ev.seen[task_id].final if task_id in ev.seen else None
        reason = final.get("reason") if final else None
        if not kind:  # no producer made it and no record of it was seen: unaccounted for
            bad.append(f"{task_id} is dead but no enqueue, attempt or record explains it")
        elif DEAD_REASONS.get(kind) != reason:
            bad.append(f"{task_id} ({kind}) dead-lettered with reason {reason!r}")
    for task_id in ev.acked:
        if ev.kind_of(task_id) in DEAD_REASONS and task_id not in ev.dead_ids:
            bad.append(f"{task_id} ({ev.kind_of(task_id)}) never reached the dead letters")
    if bad:
        report.violations.append(f"dead-letter queue is wrong: {_few(bad)}")


def check_recovery(ev: Evidence, report: Report) -> None:
    """Work resumes within RECOVERY_BOUND after each fault heals: the next attempt that
    started after the healing ran to its end within the bound."""
    runs = sorted((r.mono, r) for task_runs in ev.starts.values() for r in task_runs)
    times: list[float] = []
    for fault in ev.faults:
        healed = fault.end if fault.end is not None else fault.start
        done = [
            ev.ends[(r.task_id, r.token)][0].mono
            for start, r in runs
            if start >= healed and (r.task_id, r.token) in ev.ends
        ]
        if done:
            times.append(min(done) - healed)
        else:
            at = healed - ev.began
            report.notes.append(f"no work started after the {fault.kind} at {at:.1f}s to time")
    report.recover_s = max(times) if times else None
    slow = [t for t in times if t > RECOVERY_BOUND]
    if slow:
        report.violations.append(f"work resumed only {max(slow):.1f}s after a fault healed")


def check_cleanup(ev: Evidence, report: Report) -> None:
    """After the retention no task keys remain and memory is back near its baseline."""
    if ev.leftover_keys:
        report.violations.append(
            f"{len(ev.leftover_keys)} task keys left after the retention: {_few(ev.leftover_keys)}"
        )
    if ev.memory_after > ev.memory_before + MEMORY_SLACK:
        report.violations.append(
            f"used_memory {ev.memory_after} is above the baseline {ev.memory_before}"
        )


def _states(sighting: Sighting | None) -> str:
    return "never" if sighting is None else "/".join(sighting.states) or "no state"


def _few(items: list[str], limit: int = 5) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; ... ({len(items)} in all)" if len(items) > limit else "")
