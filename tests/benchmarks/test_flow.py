"""`python -m benchmarks.flow --smoke`: every variant ran, and the table has its rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.flow import VARIANTS

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.timeout(90)
def test_every_variant_processed_every_task_and_the_table_has_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "flow.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.flow", "--smoke", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=85,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert list(results["runs"]) == list(VARIANTS)
    for variant, runs in results["runs"].items():
        for run in runs:
            for step in ("enqueue", "process"):
                assert run[step]["rate"] > 0 and run[step]["cpu_us_per_task"] > 0, variant
    table = done.stdout.splitlines()
    for variant in VARIANTS:
        [line] = [x for x in table if x.startswith(f"| {variant} | ")]
        ratio = float(line.strip("|").split("|")[-1])
        # limits that never bind cost bookkeeping, not throughput: a tenth would mean the
        # option throttles (a rate limit's starts promoted late, say)
        assert ratio > 0.1, line
