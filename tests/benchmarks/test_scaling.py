"""`python -m benchmarks.scaling --smoke`: every cell ran, and the table has its rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = ("1", "64, strict", "64, weighted")

pytestmark = pytest.mark.slow


@pytest.mark.timeout(60)
def test_every_cell_processed_every_task_and_the_table_has_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", "--smoke", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=55,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert sorted((c["row"], c["processes"]) for c in results["cells"]) == sorted(
        (row, p) for row in ROWS for p in (1, 2)
    )
    for key, runs in results["runs"].items():
        assert len(runs) == results["sizes"]["repeats"], key
        for run in runs:
            assert run["n"] == results["sizes"]["tasks"], key
            assert run["rate"] > 0 and run["cpu_us_per_task"] > 0, key
            # a task is at least claimed and acked: two commands, inside scripts or not
            assert run["commands_per_task"] > 2, key
    table = done.stdout.splitlines()
    for row in ROWS:
        [line] = [x for x in table if x.startswith(f"| {row} | ") and x.count("|") == 6]
        figures = [float(c.replace(",", "").split()[0]) for c in line.strip("|").split("|")[1:]]
        assert len(figures) == 4 and all(f > 0 for f in figures), line
