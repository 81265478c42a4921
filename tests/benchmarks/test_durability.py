"""`python -m benchmarks.durability --smoke`: both variants ran, and the table has its rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.timeout(90)
def test_both_variants_enqueued_and_the_table_has_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "durability.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.durability", "--smoke", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=85,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text())
    assert list(results["runs"]) == ["plain", "durable"]
    for runs in results["runs"].values():
        for run in runs:
            assert run["single_rate"] > 0 and run["bulk_rate"] > 0
            assert 0 < run["p50_ms"] <= run["p99_ms"]
    table = done.stdout.splitlines()
    for label in ("enqueue one at a time", "one enqueue, p50", "one enqueue, p99", "bulk"):
        [line] = [x for x in table if x.startswith(f"| {label}")]
        assert float(line.strip("|").split("|")[-1]) > 0, line
