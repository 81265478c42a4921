"""The chaos judge on evidence made by hand: a check that could not fail would prove
nothing, so each hole closed in the judge gets a case here (no Redis, no workers)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

import pytest

from conveyor.broker.keys import GlobalKeys, QueueKeys
from tests.chaos import faults
from tests.chaos.cluster import Life
from tests.chaos.evidence import LOSS_WINDOW, Evidence
from tests.chaos.faults import Fault
from tests.chaos.invariants import (
    MEMORY_PER_TASK,
    MEMORY_SLACK,
    check_cleanup,
    check_dead_letters,
    check_duplicates,
    check_lost,
    check_stored,
    check_terminal_records,
    count_enqueues,
)
from tests.chaos.keyspace import KeyState
from tests.chaos.ledger import Entry
from tests.chaos.observer import Sighting
from tests.chaos.producers import ACK, FAILED, UNKNOWN, Enqueue, TaskSpec
from tests.chaos.recovery import (
    REAP_BOUND,
    RESUME_GRACE,
    RESUME_WORK,
    check_faults,
    check_reaper,
    check_recovery,
)
from tests.chaos.report import Report
from tests.chaos.scenarios import SHORT, Scenario, Size

DEAD = "default:01J0000000000000000000DEAD"
TASK = "default:01J0000000000000000000TASK"
PREFIX = "chaos"
ALWAYS = Scenario("by-hand")
EVERYSEC = Scenario("by-hand-everysec", appendfsync="everysec", loss_allowed=True)
#: When the OS crash of the everysec cases happens (seconds of the run's clock).
CRASH_AT = 20.0
Check = Callable[[Evidence, Report], None]


def evidence(
    enqueues: Iterable[Enqueue] = (),
    seen: dict[str, Sighting] | None = None,
    *,
    scenario: Scenario = ALWAYS,
    ledger: Iterable[Entry] = (),
    dead_ids: Iterable[str] = (),
    fault_log: Iterable[Fault] = (),
    keys: Iterable[KeyState] = (),
    memory: tuple[int, int] = (0, 0),
    lives: Iterable[Life] = (),
    registered: dict[str, float] | None = None,
    size: Size = SHORT,
) -> Evidence:
    """A run made of exactly what the case gives."""
    return Evidence(
        scenario=scenario,
        max_crashes=3,
        enqueues=list(enqueues),
        ledger=list(ledger),
        seen=seen or {},
        dead_ids=set(dead_ids),
        faults=list(fault_log),
        leftover_keys=list(keys),
        memory_before=memory[0],
        memory_after=memory[1],
        size=size,
        prefix=PREFIX,
        lives=list(lives),
        registered=registered or {},
    )


def enqueued(
    kind: str, task_id: str | None = DEAD, outcome: str = ACK, at: float = 0.0, label: str = ""
) -> Enqueue:
    spec = TaskSpec(label or f"{kind}-1", kind)
    return Enqueue(spec, "library", outcome, task_id, "", at, at + 0.01)


def run(task_id: str, worker: str, token: int, at: float, took: float | None = 0.05) -> list[Entry]:
    """The ledger of one attempt: its start, and its end unless `took` is None."""
    start = Entry(task_id, "work-1", "start", 1, worker, token, token, at, at)
    if took is None:
        return [start]
    return [start, replace(start, event="end", mono=at + took, wall=at + took)]


def violations(check: Check, ev: Evidence) -> list[str]:
    report = Report("by-hand", ev.scenario.appendfsync)
    check(ev, report)
    return report.violations


def judged(check: Check, ev: Evidence) -> Report:
    report = Report("by-hand", ev.scenario.appendfsync)
    check(ev, report)
    return report


# -- dead letters --------------------------------------------------------------------------


def test_a_dead_letter_nothing_explains_is_a_violation() -> None:
    [violation] = violations(check_dead_letters, evidence(dead_ids=[DEAD]))
    assert DEAD in violation and "no enqueue, attempt or record explains it" in violation


def test_a_dead_letter_whose_record_was_never_seen_is_judged_by_its_enqueue() -> None:
    # a poison pill must die "worker lost": with no record seen, its reason is unknown
    [violation] = violations(check_dead_letters, evidence([enqueued("poison")], dead_ids=[DEAD]))
    assert "(poison) dead-lettered with reason None" in violation


def test_an_ordinary_task_must_never_die() -> None:
    seen = {DEAD: Sighting("work-1", ["dead"], {"state": "dead", "reason": "error"})}
    [violation] = violations(
        check_dead_letters, evidence([enqueued("work")], seen, dead_ids=[DEAD])
    )
    assert "(work) dead-lettered with reason 'error'" in violation


def test_a_poison_pill_dead_for_its_lost_worker_passes() -> None:
    seen = {DEAD: Sighting("poison-1", ["dead"], {"state": "dead", "reason": "worker lost"})}
    ev = evidence([enqueued("poison")], seen, dead_ids=[DEAD])
    assert violations(check_dead_letters, ev) == []


# -- loss under everysec -----------------------------------------------------------------------


def os_crash() -> Fault:
    return Fault("redis restart", None, CRASH_AT, CRASH_AT + 1.0)


def test_everysec_may_lose_a_task_acknowledged_just_before_an_os_crash() -> None:
    ev = evidence([enqueued("work", TASK, at=CRASH_AT - 0.5)], scenario=EVERYSEC,
                  fault_log=[os_crash()])  # fmt: skip
    report = judged(check_lost, ev)
    assert report.violations == [] and report.lost == 1
    assert any("lost 1 acknowledged tasks" in note for note in report.notes)


def test_everysec_loss_outside_the_window_of_any_os_crash_is_a_violation() -> None:
    early = CRASH_AT - LOSS_WINDOW - 1.0
    ev = evidence([enqueued("work", TASK, at=early)], scenario=EVERYSEC, fault_log=[os_crash()])
    [violation] = violations(check_lost, ev)
    assert "1 acknowledged tasks lost outside any OS crash's window" in violation


def test_with_always_no_loss_is_excused_even_right_before_a_crash() -> None:
    ev = evidence([enqueued("work", TASK, at=CRASH_AT - 0.5)], fault_log=[os_crash()])
    assert violations(check_lost, ev) != []


def test_a_revival_is_excused_only_if_its_ending_was_written_just_before_an_os_crash() -> None:
    def revived(seen_ended: float) -> Evidence:
        sighting = Sighting("work-1", ["succeeded", "active", "succeeded"], {"state": "dead"})
        sighting.changed = [seen_ended, CRASH_AT + 1.5, CRASH_AT + 2.0]
        return evidence([], {TASK: sighting}, scenario=EVERYSEC, fault_log=[os_crash()])

    assert not any("became live" in v for v in violations(check_terminal_records, revived(19.8)))
    [violation] = [v for v in violations(check_terminal_records, revived(5.0)) if "live" in v]
    assert "1 finished tasks became live again" in violation


# -- duplicates ------------------------------------------------------------------------------


def twice(token_after: int, crashes: int, state: str = "dead") -> dict[str, Sighting]:
    """TASK ran by w1 with token 1 and again by w2; the record counts `crashes`."""
    record = {"state": state, "reason": "worker lost", "token": str(token_after)}
    return {TASK: Sighting("work-1", [state], record, crashes=crashes)}


def duplicate_ledger(token_after: int = 2) -> list[Entry]:
    return run(TASK, "w1", 1, 1.0, took=None) + run(TASK, "w2", token_after, 4.0)


def test_a_global_fault_alone_does_not_explain_a_duplicate_of_a_dead_task() -> None:
    # a drop of every connection overlapped both runs, but no lease was ever taken back
    ev = evidence([enqueued("work", TASK)], twice(2, crashes=0), ledger=duplicate_ledger(),
                  fault_log=[Fault("drop all", None, 2.0, 2.0)])  # fmt: skip
    report = judged(check_duplicates, ev)
    assert report.duplicates == 1 and report.unexplained == 1
    assert "unexplained duplicate runs" in report.violations[0]
    assert "no crash, fault or loss" in report.violations[0]


def test_a_lease_taken_back_while_a_fault_hit_its_worker_explains_the_rerun() -> None:
    ev = evidence([enqueued("work", TASK)], twice(2, crashes=1), ledger=duplicate_ledger(),
                  fault_log=[Fault("sigkill", "w1", 2.0, 2.0)])  # fmt: skip
    report = judged(check_duplicates, ev)
    assert report.violations == [] and report.explained == 1
    assert report.duplicate_evidence == {"lease taken back": 1}


def test_a_crash_without_a_fault_on_its_worker_explains_nothing() -> None:
    ev = evidence([enqueued("work", TASK)], twice(2, crashes=1), ledger=duplicate_ledger(),
                  fault_log=[Fault("sigkill", "w3", 2.0, 2.0)])  # fmt: skip
    assert judged(check_duplicates, ev).unexplained == 1


def test_the_same_claim_run_twice_is_never_a_takeover() -> None:
    ev = evidence([enqueued("work", TASK)], twice(1, crashes=1), ledger=duplicate_ledger(1),
                  fault_log=[Fault("sigkill", "w1", 2.0, 2.0)])  # fmt: skip
    [violation] = violations(check_duplicates, ev)
    assert violation.endswith(": the same claim")


def test_the_same_claim_again_after_an_os_crash_lost_the_first_is_explained() -> None:
    # with everysec, the crash lost the claim (token 1): the next claim is token 1 again
    ledger = [*run(TASK, "w1", 1, at=CRASH_AT - 0.5, took=None), *run(TASK, "w2", 1, at=23.0)]
    ev = evidence([enqueued("work", TASK)], twice(1, crashes=0, state="succeeded"),
                  ledger=ledger, fault_log=[os_crash()], scenario=EVERYSEC)  # fmt: skip
    report = judged(check_duplicates, ev)
    assert report.violations == [] and report.duplicate_evidence == {"lost in an OS crash": 1}
    # the same runs with no crash between them: the same claim, unexplained
    ev = evidence([enqueued("work", TASK)], twice(1, crashes=0, state="succeeded"),
                  ledger=ledger, scenario=EVERYSEC)  # fmt: skip
    [violation] = violations(check_duplicates, ev)
    assert violation.endswith(": the same claim")


def test_a_zombie_starting_its_stale_claim_after_the_takeover_is_explained() -> None:
    # w1 claimed (token 1), was paused before its handler started, the lease was taken
    # back and w2 ran token 2; woken up, w1 started token 1 after it
    ledger = run(TASK, "w2", 2, 4.0) + run(TASK, "w1", 1, 5.0)
    ev = evidence([enqueued("work", TASK)], twice(2, 1, "succeeded"), ledger=ledger,
                  fault_log=[Fault("sigstop", "w1", 1.0, 4.8)])  # fmt: skip
    assert judged(check_duplicates, ev).violations == []


def test_everysec_excuses_a_rerun_whose_claim_was_lost_in_an_os_crash() -> None:
    ledger = run(TASK, "w1", 1, CRASH_AT - 0.3) + run(TASK, "w2", 1, CRASH_AT + 2.0)
    ev = evidence([enqueued("work", TASK)], twice(1, 0, "succeeded"), scenario=EVERYSEC,
                  ledger=ledger, fault_log=[os_crash()])  # fmt: skip
    report = judged(check_duplicates, ev)
    assert report.violations == [] and report.duplicate_evidence == {"lost in an OS crash": 1}


# -- enqueues --------------------------------------------------------------------------------


def test_a_task_stored_after_the_api_said_nothing_was_stored_is_a_violation() -> None:
    seen = {TASK: Sighting("work-1", ["succeeded"], {"state": "succeeded"})}
    refused = replace(enqueued("work", None, outcome=FAILED), detail="503 nothing was stored")
    report = judged(check_stored, evidence([refused], seen, scenario=EVERYSEC))
    assert report.stored_despite_error == 1
    assert any('answered "nothing was stored"' in v for v in report.violations)


def test_a_task_stored_after_the_api_said_it_may_have_been_is_counted_and_must_end() -> None:
    seen = {TASK: Sighting("work-1", ["succeeded"], {"state": "succeeded"})}
    unsure = "503 Redis is unavailable; what this request writes may or may not have been stored"
    refused = replace(enqueued("work", None, outcome=FAILED), detail=unsure)
    report = judged(check_stored, evidence([refused], seen, scenario=EVERYSEC))
    assert (report.stored_despite_error, report.stored_after_error) == (0, 1)
    assert report.violations == []


def test_a_library_error_whose_task_was_stored_is_counted_and_must_end() -> None:
    # the connection broke after Redis ran the call: ambiguous, not a lie, but it must end
    ended = {TASK: Sighting("work-1", ["succeeded"], {"state": "succeeded"})}
    report = judged(check_stored, evidence([enqueued("work", None, outcome=FAILED)], ended,
                                             scenario=EVERYSEC))  # fmt: skip
    assert (report.stored_after_error, report.violations) == (1, [])
    unended = {TASK: Sighting("work-1", ["active"])}
    ev = evidence([enqueued("work", None, outcome=FAILED)], unended, scenario=EVERYSEC)
    assert any("1 stored tasks never ended" in v for v in violations(check_stored, ev))


def test_a_stored_task_whose_enqueue_timed_out_must_still_end() -> None:
    unended = {TASK: Sighting("work-1", ["pending"])}
    ev = evidence([enqueued("work", None, outcome=UNKNOWN)], unended, scenario=EVERYSEC)
    assert any("1 stored tasks never ended" in v for v in violations(check_stored, ev))
    ended = {TASK: Sighting("work-1", ["succeeded"], {"state": "succeeded"})}
    ev = evidence([enqueued("work", None, outcome=UNKNOWN)], ended, scenario=EVERYSEC)
    assert not any("never ended" in v for v in violations(check_stored, ev))


def test_with_no_fault_every_enqueue_must_be_acknowledged() -> None:
    ev = evidence([enqueued("work", None, outcome=UNKNOWN)])
    assert any("with no fault" in v for v in violations(count_enqueues, ev))


# -- what is left after the run -----------------------------------------------------------------


def key(name: str, kind: str = "string", ttl_ms: int = -1, *members: str) -> KeyState:
    return KeyState(name, kind, ttl_ms, len(members), members)


def kept_on_purpose() -> list[KeyState]:
    g, q = GlobalKeys(PREFIX), QueueKeys(PREFIX, "default")
    return [
        key(g.queues, "set", -1, "default"),
        key(g.workers, "zset", -1, "w1"),
        key(g.worker("w1"), "string", 5000),
        key(g.reaper, "string", 900),
        key(q.signal, "list", -1, "1"),
        key(q.claim_request("r1"), "list", 2000, TASK),
        key(q.idempotency("k"), "string", 60_000),
    ]


def cleanup(keys: list[KeyState], memory: tuple[int, int] = (0, 0)) -> list[str]:
    lives = [Life("w1", 0, 0.0)]
    return violations(check_cleanup, evidence(keys=keys, memory=memory, lives=lives))


def test_the_keys_conveyor_keeps_on_purpose_are_explained() -> None:
    assert cleanup(kept_on_purpose()) == []


@pytest.mark.parametrize(
    "leftover",
    [
        key(QueueKeys(PREFIX, "default").idempotency("k"), "string", -1),  # never expires
        key(QueueKeys(PREFIX, "default").task(TASK), "hash", -1),
        key(QueueKeys(PREFIX, "default").pending, "zset", -1, TASK),
        key(QueueKeys(PREFIX, "default").ready, "list", -1, TASK),
        key(GlobalKeys(PREFIX).presence("w1"), "list", -1, "x"),
        key(GlobalKeys(PREFIX).workers, "zset", -1, "w1", "stranger"),
        key(QueueKeys(PREFIX, "default").signal, "list", -1, "1", "1"),
        key(f"{PREFIX}:something-new", "string", -1),
    ],
    ids=lambda k: k.name.rsplit(":", 1)[-1],
)
def test_a_key_nothing_explains_is_a_violation(leftover: KeyState) -> None:
    [violation] = cleanup([*kept_on_purpose(), leftover])
    assert leftover.name in violation


def test_memory_above_the_slack_scaled_to_the_tasks_is_a_violation() -> None:
    slack = MEMORY_SLACK + MEMORY_PER_TASK * SHORT.tasks
    assert cleanup([], (1_000_000, 1_000_000 + slack)) == []
    [violation] = cleanup([], (1_000_000, 1_000_001 + slack))
    assert "above the baseline" in violation


# -- resumption ------------------------------------------------------------------------------


def busy(worker: str, since: float, count: int = RESUME_WORK) -> list[Entry]:
    """`count` short attempts by `worker`, one every 0.1 s from `since`."""
    return [e for i in range(count) for e in run(f"t{worker}{i}", worker, 1, since + i / 10)]


LIVES = [Life("w1", 0, 0.0), Life("w2", 1, 0.0)]


def test_a_paused_worker_that_never_resumes_is_a_violation() -> None:
    # past the grace a worker has to come back (its longest back-off), others got the work
    others = busy("w2", 4.0 + RESUME_GRACE + 0.5)
    ev = evidence(ledger=others, lives=LIVES, registered={"w1": 0.0, "w2": 0.0},
                  fault_log=[Fault("sigstop", "w1", 1.0, 4.0)])  # fmt: skip
    [violation] = violations(check_recovery, ev)
    assert "w1 did not resume after the sigstop" in violation


def test_a_paused_worker_that_resumes_within_the_bound_passes() -> None:
    ledger = busy("w2", 6.0) + run("mine", "w1", 1, 4.5, took=0.5)
    ev = evidence(ledger=ledger, lives=LIVES, registered={"w1": 0.0, "w2": 0.0},
                  fault_log=[Fault("sigstop", "w1", 1.0, 4.0)])  # fmt: skip
    report = judged(check_recovery, ev)
    assert report.violations == [] and report.recover_s == pytest.approx(1.0)


def test_a_killed_worker_is_judged_by_its_replacement() -> None:
    lives = [*LIVES, Life("w3", 0, 2.1)]
    kill = Fault("sigkill", "w1", 2.0, 2.0)
    ledger = busy("w2", 4.0) + run("late", "w3", 1, 3.5)  # w1 itself never runs again
    ev = evidence(ledger=ledger, lives=lives, registered={"w3": 3.0}, fault_log=[kill])
    report = judged(check_recovery, ev)
    assert report.violations == [] and report.recover_s == pytest.approx(1.45)
    others = busy("w2", 3.0 + RESUME_GRACE + 0.5)  # w3 registered at 3.0
    idle = evidence(ledger=others, lives=lives, registered={"w3": 3.0}, fault_log=[kill])
    [violation] = violations(check_recovery, idle)
    assert "w3 did not resume after the sigkill" in violation
    never = evidence(ledger=busy("w2", 13.0), lives=lives, fault_log=[kill])
    [violation] = violations(check_recovery, never)
    assert "no worker came back in place of w1 after the sigkill" in violation


def test_slow_resumption_while_others_had_work_is_a_violation() -> None:
    ledger = run("slow", "w1", 1, 5.0, took=10.0) + busy("w2", 4.0 + RESUME_GRACE + 0.5)
    ev = evidence(ledger=ledger, lives=LIVES, registered={"w1": 0.0, "w2": 0.0},
                  fault_log=[Fault("sigstop", "w1", 1.0, 4.0)])  # fmt: skip
    assert any("work resumed only 11.0s" in v for v in violations(check_recovery, ev))
    # with no work for anyone meanwhile, a late first completion is not slowness
    alone = evidence(ledger=run("slow", "w1", 1, 5.0, took=10.0), lives=LIVES,
                     registered={"w1": 0.0, "w2": 0.0},
                     fault_log=[Fault("sigstop", "w1", 1.0, 4.0)])  # fmt: skip
    report = judged(check_recovery, alone)
    assert report.violations == [] and any("had little work" in n for n in report.notes)


# -- enough faults ---------------------------------------------------------------------------


def sigkills(n: int) -> list[Fault]:
    return [Fault("sigkill", "w1", float(i), float(i)) for i in range(n)]


def test_a_scenario_that_injected_too_few_faults_fails() -> None:
    scenario = Scenario("by-hand", faults.sigkill, min_faults=(("sigkill", 2),))
    [violation] = violations(check_faults, evidence(scenario=scenario, fault_log=sigkills(1)))
    assert "1 sigkill injected, the run needs at least 2" in violation
    assert violations(check_faults, evidence(scenario=scenario, fault_log=sigkills(2))) == []
    longer = Size(SHORT.tasks, SHORT.window * 3)  # three times as long: three times as many
    assert violations(check_faults, evidence(scenario=scenario, fault_log=sigkills(5),
                                             size=longer)) != []  # fmt: skip
    assert violations(check_faults, evidence(scenario=scenario, fault_log=[])) != []
    unnamed = Scenario("by-hand", faults.sigkill)  # no minimum named: one fault at least
    assert violations(check_faults, evidence(scenario=unnamed)) == [
        "a fault scenario injected no fault"
    ]


# -- the reaper ----------------------------------------------------------------------------

REAPED = Scenario("by-hand-reaper", faults.kill_or_stall, lease=30.0, reaper=True)


def test_a_killed_workers_task_back_within_the_bound_passes_and_is_timed() -> None:
    ledger = [*run(TASK, "w1", 1, at=1.0, took=None), *run(TASK, "w2", 2, at=3.5)]
    kill = Fault("sigkill", "w1", 2.0, 2.0)
    report = judged(check_reaper, evidence(scenario=REAPED, ledger=ledger, fault_log=[kill]))
    assert report.violations == []
    assert (report.reaped, report.reap_median_s, report.reap_max_s) == (1, 1.5, 1.5)


def test_a_killed_workers_task_back_only_after_the_bound_is_a_violation() -> None:
    late = 2.0 + REAP_BOUND + 1.0  # as if its lease had run out instead
    ledger = [*run(TASK, "w1", 1, at=1.0, took=None), *run(TASK, "w2", 2, at=late)]
    kill = Fault("sigkill", "w1", 2.0, 2.0)
    [violation] = violations(check_reaper, evidence(scenario=REAPED, ledger=ledger,
                                                    fault_log=[kill]))  # fmt: skip
    assert "started again only after" in violation


def test_a_killed_workers_task_never_back_is_a_violation() -> None:
    kill = Fault("sigkill", "w1", 2.0, 2.0)
    ev = evidence(scenario=REAPED, ledger=run(TASK, "w1", 1, at=1.0, took=None), fault_log=[kill])
    [violation] = violations(check_reaper, ev)
    assert "never started again" in violation


def test_a_stopped_workers_task_taken_over_is_a_violation() -> None:
    stop = Fault("sigstop", "w1", 2.0, 4.0)
    kill_elsewhere = [Fault("sigkill", "w3", 5.0, 5.0)]
    ledger = [*run(TASK, "w1", 1, at=1.0, took=4.0), *run(TASK, "w2", 2, at=3.0),
              *run(DEAD, "w3", 1, at=4.5, took=None), *run(DEAD, "w2", 2, at=6.0)]  # fmt: skip
    [violation] = violations(check_reaper, evidence(scenario=REAPED, ledger=ledger,
                                                    fault_log=[stop, *kill_elsewhere]))  # fmt: skip
    assert f"{TASK} was taken from its stopped worker" in violation
    # the same stall without the takeover passes
    kept = [e for e in ledger if not (e.task_id == TASK and e.worker == "w2")]
    assert violations(check_reaper, evidence(scenario=REAPED, ledger=kept,
                                             fault_log=[stop, *kill_elsewhere])) == []  # fmt: skip


def test_a_reaper_scenario_whose_kills_interrupted_nothing_proves_nothing() -> None:
    kill = Fault("sigkill", "w1", 2.0, 2.0)
    ev = evidence(scenario=REAPED, ledger=run(TASK, "w1", 1, at=1.0), fault_log=[kill])
    assert violations(check_reaper, ev) == [
        "the reaper failed: no SIGKILL interrupted a task: the reaper was not put to the test"
    ]
