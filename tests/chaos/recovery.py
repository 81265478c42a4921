"""The checks on the faults themselves: enough of them were injected to prove anything,
and after each one every worker it hit went back to work within RECOVERY_BOUND."""

from __future__ import annotations

import math
import statistics
from collections import Counter

from conveyor.worker.outage import MAX_OUTAGE_BACKOFF
from tests.chaos.cluster import Life
from tests.chaos.evidence import Evidence
from tests.chaos.faults import Fault
from tests.chaos.ledger import Entry
from tests.chaos.report import Report

#: Work must resume within this many seconds after a fault heals.
RECOVERY_BOUND = 10.0
#: Faults after which the worker is gone for good: its replacement must resume instead.
KILLS = frozenset({"sigkill", "sigterm", "crash"})
#: Seconds a worker back from a fault may take to claim again: reconnect, and sleep out
#: the longest back-off after an outage (repeated faults take it to its cap).
RESUME_GRACE = MAX_OUTAGE_BACKOFF + 1.0
#: A worker that got none of this many attempts started elsewhere once it was back (and
#: past RESUME_GRACE) did not resume; fewer prove nothing (there was little work left).
RESUME_WORK = 10
#: Seconds from a SIGKILL to the start elsewhere of each task it interrupted, where the
#: lease is far longer: the reaper's target (2 s) and a loaded machine's slack.
REAP_BOUND = 5.0
#: A start elsewhere this soon after a stall ended is still a takeover of the stalled
#: worker's task: the next fault (a kill) comes later than that, and takes longer to see.
STALL_TAIL = 1.0


def check_faults(ev: Evidence, report: Report) -> None:
    """Each kind of fault was injected at least as often as the scenario needs at this
    size; the API said 503 while Redis was down."""
    report.faults = dict(Counter(f.kind for f in ev.faults))
    if ev.scenario.faults is not None and not report.faults:  # even with no minimum named
        report.violations.append("a fault scenario injected no fault")
    for kind, needed in ev.scenario.fault_minimum(ev.size).items():
        if report.faults.get(kind, 0) < needed:
            report.violations.append(
                f"{report.faults.get(kind, 0)} {kind} injected, the run needs at least {needed}"
            )
    if ev.scenario.api and report.faults.get("redis restart") and not report.api_refused:
        report.violations.append("the API never answered 503 while Redis was down")


def check_recovery(ev: Evidence, report: Report) -> None:
    """After each fault heals, each worker it hit (or the replacement of one it ended)
    completes an attempt started after the healing within RECOVERY_BOUND."""
    times: list[float] = []
    for fault in ev.faults:
        for line in _lines(ev, fault):
            took = _resumed(ev, fault, line, report)
            if took is not None:
                times.append(took)
    report.recover_s = max(times) if times else None
    slow = [t for t in times if t > RECOVERY_BOUND]
    if slow:
        report.violations.append(f"work resumed only {max(slow):.1f}s after a fault healed")


def _lines(ev: Evidence, fault: Fault) -> list[list[Life]]:
    """For each worker `fault` hit, the processes that must resume for it: that worker,
    or for a kill the workers started in its place, each with its later replacements."""
    healed = fault.end if fault.end is not None else fault.start
    if fault.worker is None:
        slots = {life.slot for life in ev.lives}
        hit = [max((x for x in ev.lives if x.slot == s and x.started <= healed),
                   key=lambda x: x.started, default=None) for s in slots]  # fmt: skip
    else:
        hit = [next((x for x in ev.lives if x.worker_id == fault.worker), None)]
    lines = []
    for life in hit:
        if life is None:
            continue
        line = [x for x in ev.lives if x.slot == life.slot and x.started >= life.started]
        lines.append(line[1:] if fault.kind in KILLS else line)
    return [line for line in lines if line]


def _resumed(ev: Evidence, fault: Fault, line: list[Life], report: Report) -> float | None:
    """Seconds from the healing (or the replacement's start) to the line's first
    completion of an attempt started after it; None, with a violation or a note, if it
    completed none."""
    healed = fault.end if fault.end is not None else fault.start
    since = max(healed, line[0].started)
    ids = {life.worker_id for life in line}
    done = [
        end.mono for runs in ev.starts.values() for run in runs
        if run.worker in ids and run.mono >= since and (end := ev.ended(run)) is not None
    ]  # fmt: skip
    back = max(since, ev.registered.get(line[0].worker_id, math.inf))
    at = f"{healed - ev.began:.1f}s"
    if done:
        # late only if others had work meanwhile: a worker with nothing to do is not slow
        idle_while = _elsewhere(ev, ids, back + RESUME_GRACE, min(done))
        if min(done) - since > RECOVERY_BOUND and idle_while < RESUME_WORK:
            report.notes.append(f"{line[0].worker_id} had little work after the {fault.kind} "
                                f"at {at}")  # fmt: skip
            return None
        return min(done) - since
    closes = _next_hit(ev, fault, ids)
    elsewhere = _elsewhere(ev, ids, back + RESUME_GRACE, closes)
    if elsewhere >= RESUME_WORK:
        report.violations.append(f"{line[0].worker_id} did not resume after the {fault.kind} "
                                 f"at {at}: {elsewhere} attempts started elsewhere")  # fmt: skip
    elif back == math.inf and _elsewhere(ev, ids, since + RECOVERY_BOUND, closes):
        report.violations.append(f"no worker came back in place of {fault.worker} after the "
                                 f"{fault.kind} at {at}")  # fmt: skip
    else:
        report.notes.append(f"{line[0].worker_id} had little work left after the {fault.kind} "
                            f"at {at}")  # fmt: skip
    return None


def _elsewhere(ev: Evidence, ids: set[str], begin: float, end: float) -> int:
    """Attempts that workers other than `ids` started between `begin` and `end`."""
    return sum(
        1 for runs in ev.starts.values() for run in runs
        if run.worker not in ids and begin <= run.mono <= end
    )  # fmt: skip


def _next_hit(ev: Evidence, fault: Fault, ids: set[str]) -> float:
    """When the next fault after `fault` hit one of `ids` (or every worker)."""
    return min(
        (f.start for f in ev.faults
         if f.start > fault.start and (f.worker is None or f.worker in ids)),
        default=math.inf,
    )  # fmt: skip


def check_reaper(ev: Evidence, report: Report) -> None:
    """Where the lease is far longer than the reaper needs: every task a SIGKILL
    interrupted starts again within REAP_BOUND, and no task of a stopped worker starts
    elsewhere while it is stopped (the reaper told the stalled from the dead)."""
    if not ev.scenario.reaper:
        return
    bad: list[str] = []
    gaps = _reap_gaps(ev, bad)
    if gaps:
        report.reaped = len(gaps)
        report.reap_median_s = statistics.median(gaps)
        report.reap_max_s = max(gaps)
    slow = [gap for gap in gaps if gap > REAP_BOUND]
    if slow:
        bad.append(f"{len(slow)} killed workers' tasks started again only after {max(slow):.1f}s")
    if not gaps:
        bad.append("no SIGKILL interrupted a task: the reaper was not put to the test")
    if bad:
        report.violations.append(f"the reaper failed: {'; '.join(bad[:5])}")


def _reap_gaps(ev: Evidence, bad: list[str]) -> list[float]:
    """Seconds from each SIGKILL to the next start of each task it interrupted; what went
    wrong (a task never back, a stopped worker's task taken) is added to `bad`."""
    gaps: list[float] = []
    for fault in ev.faults:
        until = fault.end if fault.end is not None else fault.start
        for run in _in_flight(ev, fault):
            later = [r.mono for r in ev.starts[run.task_id] if r.token > run.token]
            if fault.kind == "sigkill":
                if not later:
                    bad.append(f"{run.task_id} never started again after its worker's SIGKILL")
                else:
                    gaps.append(min(later) - fault.start)
            elif any(start <= until + STALL_TAIL for start in later):
                bad.append(f"{run.task_id} was taken from its stopped worker")
    return gaps


def _in_flight(ev: Evidence, fault: Fault) -> list[Entry]:
    """The runs of ordinary tasks on the worker `fault` hit that had started, and not
    ended, when it began."""
    if fault.kind not in ("sigkill", "sigstop"):
        return []
    return [
        run
        for runs in ev.starts.values()
        for run in runs
        if run.worker == fault.worker and run.mono < fault.start
        and ((end := ev.ended(run)) is None or end.mono > fault.start)
    ]  # fmt: skip
