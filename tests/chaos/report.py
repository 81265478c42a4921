"""A scenario's report row, and the markdown table and JSON of a whole run."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Report:
    """What one scenario run did and found; `violations` empty means it passed."""

    scenario: str
    appendfsync: str
    tasks: int = 0  # acknowledged enqueues
    enqueues_failed: int = 0
    enqueues_unknown: int = 0
    #: Enqueues the API refused with 503 (Redis unavailable, or full).
    api_refused: int = 0
    #: Enqueues answered "nothing was stored" whose task was stored after all.
    stored_despite_error: int = 0
    #: Enqueues that failed otherwise (a library error, the API's 503 for an unreachable
    #: Redis) whose task was stored: the connection broke after Redis ran the call.
    #: Ambiguous, not false; each must still end.
    stored_after_error: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicates: int = 0
    explained: int = 0
    unexplained: int = 0
    #: How the extra runs of the duplicates were explained, e.g. {"lease taken back": 4}.
    duplicate_evidence: dict[str, int] = field(default_factory=dict)
    dead: int = 0
    #: Longest time from an acknowledged enqueue to its task's end.
    slowest_s: float = 0.0
    #: Longest time from a fault's healing to the next completed attempt claimed after it.
    recover_s: float | None = None
    #: With the reaper: tasks a SIGKILL interrupted, and the median and longest time from
    #: the kill to their next start (elsewhere).
    reaped: int = 0
    reap_median_s: float | None = None
    reap_max_s: float | None = None
    #: Terminal records seen going back to a live state (a succeeded task run again).
    reverted: int = 0
    #: Claims whose handler never started (a worker killed, or a claim's reply lost).
    orphaned_claims: int = 0
    #: Ordinary tasks in flight in a process a poison pill killed (all must succeed).
    poison_bystanders: int = 0
    memory_before: int = 0
    memory_after: int = 0
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True if every invariant held."""
        return not self.violations

    @property
    def faults_text(self) -> str:
        """The faults as text, e.g. "4 sigkill, 2 crash"."""
        return ", ".join(f"{n} {kind}" for kind, n in sorted(self.faults.items())) or "none"

    def to_json(self) -> dict[str, Any]:
        """Everything, for the JSON report."""
        out = dataclasses.asdict(self)
        out["passed"] = self.passed
        return out


COLUMNS = ("scenario", "tasks", "enqueues failed/unknown", "faults injected", "lost",
           "duplicates (explained/unexplained)", "dead", "time to recover", "result")  # fmt: skip


def row(report: Report) -> list[str]:
    """One markdown table row."""
    recover = "n/a" if report.recover_s is None else f"{report.recover_s:.1f} s"
    lost = str(report.lost)
    if report.lost or report.scenario.endswith("everysec"):
        lost = f"{report.lost} ({report.lost / max(1, report.tasks):.2%})"
    return [
        report.scenario,
        str(report.tasks),
        f"{report.enqueues_failed}/{report.enqueues_unknown}",
        report.faults_text,
        lost,
        f"{report.duplicates} ({report.explained}/{report.unexplained})",
        str(report.dead),
        recover,
        "pass" if report.passed else f"FAIL ({len(report.violations)})",
    ]


def markdown(reports: list[Report]) -> str:
    """The markdown table of a run, with totals."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(r)) + " |" for r in reports]
    total = Report("**total**", "")
    for r in reports:
        total.tasks += r.tasks
        total.enqueues_failed += r.enqueues_failed
        total.enqueues_unknown += r.enqueues_unknown
        total.lost += r.lost
        total.duplicates += r.duplicates
        total.explained += r.explained
        total.unexplained += r.unexplained
        total.dead += r.dead
        for kind, n in r.faults.items():
            total.faults[kind] = total.faults.get(kind, 0) + n
        total.violations += r.violations
    recovers = [r.recover_s for r in reports if r.recover_s is not None]
    total.recover_s = max(recovers) if recovers else None
    cells = row(total)
    cells[3] = f"{sum(total.faults.values())} faults"
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
