"""The chaos suite, short version: every scenario for a few seconds, every invariant.

Real redis-servers, worker and API subprocesses and a TCP proxy; nothing is mocked. The
soak runs the same scenarios longer: `python -m tests.chaos --minutes 10`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.report import Report, markdown
from tests.chaos.runner import run_scenario
from tests.chaos.scenarios import SCENARIOS, SHORT, Scenario

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


def explain(report: Report) -> str:
    """The report as a failure message: its row, then each violation and note."""
    lines = [markdown([report]), *(f"FAIL: {v}" for v in report.violations)]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_scenario_keeps_every_invariant(scenario: Scenario, tmp_path: Path) -> None:
    # the judge also fails a run that acknowledged too few enqueues or injected too few
    # faults, and a fault-free one with any enqueue not acknowledged: the soak shares it
    report = run_scenario(scenario, SHORT, tmp_path / scenario.name, seed=7)
    assert report.passed, explain(report)
