"""The chaos judge on evidence made by hand: a check that could not fail would prove
nothing, so each hole closed in the judge gets a case here (no Redis, no workers)."""

from __future__ import annotations

from tests.chaos.invariants import Evidence, check_dead_letters
from tests.chaos.observer import Sighting
from tests.chaos.producers import ACK, Enqueue, TaskSpec
from tests.chaos.report import Report
from tests.chaos.scenarios import Scenario

DEAD = "default:01J0000000000000000000DEAD"


def evidence(enqueues: list[Enqueue], seen: dict[str, Sighting]) -> Evidence:
    """A run in which `DEAD` ended in the dead-letter queue."""
    return Evidence(
        scenario=Scenario("by-hand"),
        max_crashes=3,
        enqueues=enqueues,
        ledger=[],
        seen=seen,
        dead_ids={DEAD},
        faults=[],
        leftover_keys=[],
        memory_before=0,
        memory_after=0,
    )


def enqueued(kind: str) -> Enqueue:
    return Enqueue(TaskSpec(f"{kind}-1", kind), "library", ACK, DEAD, "", 0.0, 0.0)


def dead_letter_violations(ev: Evidence) -> list[str]:
    report = Report("by-hand", "always")
    check_dead_letters(ev, report)
    return report.violations


def test_a_dead_letter_nothing_explains_is_a_violation() -> None:
    [violation] = dead_letter_violations(evidence([], {}))
    assert DEAD in violation and "no enqueue, attempt or record explains it" in violation


def test_a_dead_letter_whose_record_was_never_seen_is_judged_by_its_enqueue() -> None:
    # a poison pill must die "worker lost": with no record seen, its reason is unknown
    [violation] = dead_letter_violations(evidence([enqueued("poison")], {}))
    assert "(poison) dead-lettered with reason None" in violation


def test_an_ordinary_task_must_never_die() -> None:
    seen = {DEAD: Sighting("work-1", ["dead"], {"state": "dead", "reason": "error"})}
    [violation] = dead_letter_violations(evidence([enqueued("work")], seen))
    assert "(work) dead-lettered with reason 'error'" in violation


def test_a_poison_pill_dead_for_its_lost_worker_passes() -> None:
    seen = {DEAD: Sighting("poison-1", ["dead"], {"state": "dead", "reason": "worker lost"})}
    assert dead_letter_violations(evidence([enqueued("poison")], seen)) == []
