"""The chaos suite, short version: every scenario for a few seconds, every invariant.

Real redis-servers, worker and API subprocesses and a TCP proxy; nothing is mocked. The
soak runs the same scenarios longer: `python -m tests.chaos --minutes 10`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.report import Report, markdown
from tests.chaos.runner import run_scenario
from tests.chaos.scenarios import SCENARIOS, SHORT_TASKS, Scenario, Size

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

#: A few hundred tasks over a few seconds per scenario: the file runs in about 3 minutes.
SHORT = Size(tasks=SHORT_TASKS, window=7.0)


def explain(report: Report) -> str:
    """The report as a failure message: its row, then each violation and note."""
    lines = [markdown([report]), *(f"FAIL: {v}" for v in report.violations)]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_scenario_keeps_every_invariant(scenario: Scenario, tmp_path: Path) -> None:
    report = run_scenario(scenario, SHORT, tmp_path / scenario.name, seed=7)
    assert report.passed, explain(report)
    assert report.tasks > 0.5 * SHORT.tasks, explain(report)  # the run really ran
    if scenario.faults is not None:
        assert sum(report.faults.values()) > 0, "no fault was injected"
    else:  # with nothing failing, every enqueue is acknowledged
        assert (report.enqueues_failed, report.enqueues_unknown) == (0, 0), explain(report)
    if scenario.api:  # Redis was down while the API took requests: it said so
        assert report.api_refused > 0, explain(report)
