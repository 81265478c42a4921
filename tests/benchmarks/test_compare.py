"""The A/B's table and its verdicts, from made-up runs (running it builds a virtualenv)."""

from __future__ import annotations

from typing import Any

import click
import pytest

from benchmarks.compare import _scenarios, _verdict, markdown


def runs(*rates: float) -> list[dict[str, Any]]:
    return [{"n": 1000, "seconds": 1000 / r, "rate": r} for r in rates]


def test_a_verdict_needs_five_runs_a_side_and_ranges_apart() -> None:
    assert _verdict([10, 11], [1, 2]) == "-"
    assert _verdict([10, 11, 12, 13, 14], [5, 6, 7, 8, 9]) == "**slower**"
    assert _verdict([5, 6, 7, 8, 9], [10, 11, 12, 13, 14]) == "faster"
    assert _verdict([10, 11, 12, 13, 14], [9, 10.5, 11, 12, 13]) == "within"


def test_end_to_end_stands_for_both_process_counts() -> None:
    assert _scenarios("sync_enqueue, end_to_end") == ["enqueue", "e2e_1", "e2e_2"]
    with pytest.raises(click.BadParameter):
        _scenarios("sync_enqueue,bogus")


def test_the_table_has_medians_ratio_and_ranges() -> None:
    results = {
        "machine": {"date": "d", "cores": 2, "cpu": "c", "python": "3.11", "redis": "7.0"},
        "sizes": {"enqueue": 10, "concurrency": 64, "bulk": 10, "e2e": 10, "e2e_large": 10},
        "sides": {"baseline": {"version": "abc"}, "current": {"version": "def"}},
        "command": "python -m benchmarks.compare --baseline abc",
        "repeats": 3,
        "scenarios": ["enqueue", "bulk"],
        "runs": {
            "baseline": {"enqueue": runs(100, 200, 300), "bulk": runs(100)},
            "current": {"enqueue": runs(150, 300, 450), "bulk": [{"error": "boom"}]},
        },
    }
    table = markdown(results)
    assert "| enqueue, one at a time (sync) | 200 | 300 | 1.500 | 100-300 | 150-450 | - |" in table
    assert "| bulk enqueue | 100 | failed | - | 100-100 | - | - |" in table
