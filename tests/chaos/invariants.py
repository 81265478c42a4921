"""The invariants checked after every scenario, each a hard failure (a violation).

Each check reads only the `Evidence` (evidence.py) and writes its findings to the report.
"""

from __future__ import annotations

import itertools
from collections import Counter

import orjson

from conveyor.broker.scripts import load_scripts
from tests.chaos.evidence import LOSS_WINDOW, Evidence
from tests.chaos.keyspace import unexplained
from tests.chaos.ledger import Entry
from tests.chaos.observer import TERMINAL, Sighting
from tests.chaos.producers import ACK, FAILED
from tests.chaos.recovery import check_faults, check_reaper, check_recovery
from tests.chaos.report import Report
from tests.chaos.tasks import OVERRUN_RETRIES

#: Every acknowledged task must end within this many seconds of its enqueue.
TERMINAL_BOUND = 60.0
#: The dead-letter reason each kind of task must die with; other kinds must never die.
DEAD_REASONS = {"poison": "worker lost", "overrun": "timeout"}
#: Redis memory may end this much above its baseline whatever the run's size: Redis 7.0
#: holds about 400 KiB more, clients aside, once it has served any work (measured the
#: same after 60, 250 and 600 tasks), and the CI-size scenarios ended 560-620 KiB above
#: it once the workers also held a pub/sub subscription and ran the event scripts (the
#: event stream itself is deleted before the reading: see Observer.drop_events) ...
MEMORY_SLACK = 768 * 1024
#: ... plus this much per task: a quarter of a record (about 1 KiB), so a leak of even a
#: fraction of each task's record shows.
MEMORY_PER_TASK = 256
#: Scripts the Redis under test may cache: Conveyor's own, one per Lua file.
MAX_SCRIPTS = len(load_scripts())
#: Kinds whose reruns are their guarantee, checked in check_special_tasks, not duplicates.
RERUN_KINDS = frozenset({"poison", "gil"})
LOSS_TEXT = f"{LOSS_WINDOW:.1f}s"


def judge(ev: Evidence) -> Report:
    """Check every invariant; the report lists each violation."""
    report = Report(ev.scenario.name, ev.scenario.appendfsync)
    for check in (count_enqueues, check_stored, check_lost, check_phantoms, check_terminal_records,
                  check_duplicates, check_special_tasks, check_dead_letters, check_faults,
                  check_recovery, check_reaper, check_cleanup):  # fmt: skip
        check(ev, report)
    report.violations += ev.anomalies
    report.notes += ev.notes
    report.memory_before, report.memory_after = ev.memory_before, ev.memory_after
    return report


def count_enqueues(ev: Evidence, report: Report) -> None:
    """With no fault every enqueue is acknowledged, and the run really ran (most of its
    enqueues acknowledged)."""
    outcomes = Counter(e.outcome for e in ev.enqueues)
    report.tasks = outcomes[ACK]
    report.enqueues_failed = outcomes[FAILED]
    report.enqueues_unknown = outcomes["unknown"]
    report.api_refused = sum(1 for e in ev.enqueues if e.detail.startswith("503"))
    if ev.scenario.faults is None and (report.enqueues_failed or report.enqueues_unknown):
        report.violations.append(f"with no fault, {report.enqueues_failed} enqueues failed "
                                 f"and {report.enqueues_unknown} timed out")  # fmt: skip
    if report.tasks < ev.size.tasks / 2:
        report.violations.append(f"only {report.tasks} of {ev.size.tasks} enqueues acknowledged")


def check_stored(ev: Evidence, report: Report) -> None:
    """Producers are told the truth: an answer that said nothing was stored (the API's
    503 for a full Redis) stored nothing, and whatever was stored, acknowledged or not,
    ends. (An unreachable Redis gets a 503 that says the write may have been stored.)"""
    stored = {s.label: i for i, s in ev.seen.items()} | {e.label: e.task_id for e in ev.ledger}
    errors = [e for e in ev.enqueues if e.outcome == FAILED and e.spec.label in stored]
    refused = [e.spec.label for e in errors if "nothing was stored" in e.detail]
    report.stored_despite_error = len(refused)
    report.stored_after_error = len(errors) - len(refused)
    if refused:
        report.violations.append(
            f'{len(refused)} enqueues answered "nothing was stored" were stored: ' + _few(refused)
        )
    if report.stored_after_error:  # the call's connection broke after Redis ran it
        report.notes.append(f"{report.stored_after_error} enqueues that failed were stored "
                            "(the connection broke after Redis ran them)")  # fmt: skip
    unended = [
        f"{stored[e.spec.label]} ({e.outcome})" for e in ev.enqueues
        if e.outcome != ACK and e.spec.label in stored
        and not _ended(ev, stored[e.spec.label]) and not ev.may_be_lost(e.sent, e.answered)
    ]  # fmt: skip
    if unended:
        report.violations.append(f"{len(unended)} stored tasks never ended: {_few(unended)}")


def _ended(ev: Evidence, task_id: str) -> bool:
    sighting = ev.seen.get(task_id)
    return sighting is not None and sighting.final is not None


def check_lost(ev: Evidence, report: Report) -> None:
    """Every acknowledged enqueue ends succeeded, or dead with a reason; with everysec,
    only one acknowledged within LOSS_WINDOW before an OS crash may be lost."""
    lost, excused, ran = [], 0, 0
    for task_id, enqueue in ev.acked.items():
        sighting = ev.seen.get(task_id)
        if sighting is None or sighting.terminal_at is None:
            lost.append(f"{task_id} ({enqueue.source}, last seen {_states(sighting)})")
            ran += any((task_id, run.token) in ev.ends for run in ev.starts.get(task_id, []))
            excused += ev.may_be_lost(enqueue.sent, enqueue.answered)
        else:
            report.slowest_s = max(report.slowest_s, sighting.terminal_at - enqueue.answered)
    report.lost = len(lost)
    if report.slowest_s > TERMINAL_BOUND:
        report.violations.append(f"a task took {report.slowest_s:.1f}s to end after its enqueue")
    if len(lost) > excused:
        report.violations.append(
            f"{len(lost) - excused} acknowledged tasks lost outside any OS crash's window "
            f"({len(lost)} lost in all): {_few(lost)}"
        )
    elif lost:
        report.notes.append(
            f"lost {len(lost)} acknowledged tasks, each in the last {LOSS_TEXT} before an OS "
            f"crash ({ran} of them had run to their end, but their records are gone): "
            f"{_few(lost)}"
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
    finished task comes back to life (only an OS crash, with everysec, may undo an ending
    written within LOSS_WINDOW before it)."""
    bad, revived = [], []
    for task_id, sighting in ev.seen.items():
        final = sighting.final
        if final is not None:
            bad += _terminal_record(ev, task_id, sighting, final)
            claims = int(final.get("attempts", "0"))
            report.orphaned_claims += max(0, claims - len(ev.starts.get(task_id, [])))
        for seen_ended in _revivals(sighting):
            report.reverted += 1
            if not ev.may_be_lost(seen_ended):
                revived.append(f"{task_id} ended (seen at {seen_ended - ev.began:.1f}s)")
    report.dead = sum(1 for s in ev.seen.values() if s.final and s.final["state"] == "dead")
    if bad:
        report.violations.append(f"{len(bad)} bad terminal records: {_few(bad)}")
    if report.orphaned_claims:
        report.notes.append(f"{report.orphaned_claims} claims never started their handler")
    if revived:
        report.violations.append(f"{len(revived)} finished tasks became live again, "
                                 f"no OS crash undid their ending: {_few(revived)}")  # fmt: skip
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
    token, and no later claim exists (a stale completion never overwrote a newer one),
    unless that claim was lost in an OS crash."""
    token = int(final.get("token", "0"))
    result = orjson.loads(final["result"]) if final.get("result") else None
    runs = ev.starts.get(task_id, [])
    if token not in [e.token for e in runs] or (task_id, token) not in ev.ends:
        return [f"{task_id} succeeded with token {token} but no ledger run of it ended"]
    if not isinstance(result, dict) or result.get("token") != token:
        return [f"{task_id} record token {token} holds the result of {result}"]
    later = [run for run in runs if run.token > token and not ev.may_be_lost(run.mono)]
    if later:
        return [f"{task_id} succeeded with token {token} after a claim with {later[0].token}"]
    return []


def _revivals(sighting: Sighting) -> list[float]:
    """When each terminal state that a live state followed was seen (a task revived)."""
    states, seen_at = sighting.states, sighting.changed
    return [
        seen_at[i] if i < len(seen_at) else float("nan")
        for i in range(len(states) - 1)
        if states[i] in TERMINAL and states[i + 1] not in TERMINAL
    ]


def check_duplicates(ev: Evidence, report: Report) -> None:
    """Count tasks started more than planned, whatever their end; explain each extra run
    by evidence that its lease was taken over (or its claim lost in an OS crash)."""
    unexplained_runs: list[str] = []
    for task_id, runs in ev.starts.items():
        kind = ev.kind_of(task_id)
        planned = 1 + (OVERRUN_RETRIES if kind == "overrun" else 0)
        if kind in RERUN_KINDS or len(runs) <= planned:
            continue
        report.duplicates += 1
        why = _unexplained_reruns(ev, task_id, runs, planned, report.duplicate_evidence)
        unexplained_runs += why
    report.unexplained = len({u.split()[0] for u in unexplained_runs})
    report.explained = report.duplicates - report.unexplained
    if report.duplicate_evidence:
        how = ", ".join(f"{n} {why}" for why, n in sorted(report.duplicate_evidence.items()))
        report.notes.append(f"extra runs explained: {how}")
    if unexplained_runs:
        report.violations.append(f"unexplained duplicate runs: {_few(unexplained_runs)}")
    if report.duplicates and ev.scenario.zero_duplicates:
        report.violations.append(f"{report.duplicates} duplicate executions (must be none)")


def _unexplained_reruns(
    ev: Evidence, task_id: str, runs: list[Entry], planned: int, tally: dict[str, int]
) -> list[str]:
    """Each run after another is a takeover if the claim is newer (a higher token), the
    record counts a crash for it (a lease taken back: expiry, the reaper, a dead process)
    and a fault hit the earlier run's worker meanwhile; or, with everysec, if the earlier
    claim or completion was written just before an OS crash and lost. A timeout task's
    planned retries need no takeover: only the runs past them are counted."""
    sighting = ev.seen.get(task_id)
    crashes = sighting.crashes if sighting else 0
    retries, bad = planned - 1, []
    # in the order of their claims: a zombie may start its handler after the takeover did
    for run, after in itertools.pairwise(sorted(runs, key=lambda r: (r.token, r.mono))):
        end = ev.ended(run)
        if after.token > run.token and crashes > 0 and ev.hit(run, after):
            crashes -= 1
            tally["lease taken back"] = tally.get("lease taken back", 0) + 1
        elif ev.may_be_lost(run.mono, end.mono if end else None) or (
            after.token <= run.token and ev.crashed_between(run.mono - LOSS_WINDOW, after.mono)
        ):  # the same token claimed again: the first claim was lost in a crash
            tally["lost in an OS crash"] = tally.get("lost in an OS crash", 0) + 1
        elif retries > 0 and after.token > run.token:
            retries -= 1
        else:
            what = "the same claim" if after.token <= run.token else "no crash, fault or loss"
            bad.append(f"{task_id} run by {run.worker} at {run.mono - ev.began:.2f}s (token "
                       f"{run.token}) and by {after.worker} at {after.mono - ev.began:.2f}s "
                       f"(token {after.token}): {what}")  # fmt: skip
    return bad


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


def check_cleanup(ev: Evidence, report: Report) -> None:
    """After the retention every key left is one Conveyor keeps on purpose (bounded, or
    expiring), the script cache holds Conveyor's scripts only, and memory is back near
    its baseline: within a fixed slack plus a fraction of a record per task."""
    workers = {life.worker_id for life in ev.lives}
    left = unexplained(ev.leftover_keys, ev.prefix, workers)
    if left:
        report.violations.append(f"{len(left)} keys left after the retention: {_few(left)}")
    if ev.cached_scripts > MAX_SCRIPTS:
        report.violations.append(f"{ev.cached_scripts} scripts cached (at most {MAX_SCRIPTS})")
    slack = MEMORY_SLACK + MEMORY_PER_TASK * ev.size.tasks
    if ev.memory_after > ev.memory_before + slack:
        report.violations.append(
            f"memory {ev.memory_after} is {ev.memory_after - ev.memory_before} bytes above "
            f"the baseline {ev.memory_before} (slack {slack})"
        )


def _states(sighting: Sighting | None) -> str:
    return "never" if sighting is None else "/".join(sighting.states) or "no state"


def _few(items: list[str], limit: int = 5) -> str:
    shown = "; ".join(items[:limit])
    return shown + (f"; ... ({len(items)} in all)" if len(items) > limit else "")
