"""`python -m benchmarks.depth --smoke`: every level and step measured, and the report's rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LEVELS = {
    "empty": "empty",
    "deep_behind": "deep, backlog behind (priority -1)",
    "deep_ahead": "deep, backlog ahead (same priority)",
    "keyspace_only": "control: backlog in another queue",
}
STEPS = ("enqueue, one at a time", "claim+ack, 1 per call", "claim+ack, 100 per call")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    out = tmp_path_factory.mktemp("depth") / "depth.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.depth", "--smoke", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done.stdout


def test_every_step_of_every_level_cost_redis_something(run: tuple[dict[str, Any], str]) -> None:
    results, _ = run
    assert set(results["levels"]) == set(LEVELS)
    for key, level in results["levels"].items():
        assert (level["fill"] is None) == (key == "empty")
        for step, samples in level["steps"].items():
            assert len(samples) == results["sizes"]["repeats"], (key, step)
            for figures in samples:
                assert figures["cpu_us_per_task"] > 0 and figures["rate"] > 0, (key, step)
        enqueue, one, batch = (level["steps"][s][0] for s in
                               ("enqueue", "claim_ack_1", "claim_ack_batch"))  # fmt: skip
        # the snapshots bracket exactly the step's work: one script call per enqueue, a
        # claim and an ack per task one at a time, one of each per 100 tasks batched
        assert enqueue["script_calls_per_task"] == 1
        assert one["script_calls_per_task"] == 2
        assert batch["script_calls_per_task"] == 2 / 100
        assert enqueue["commands_per_task"] > 1 and one["commands_per_task"] > 2


def test_memory_is_measured_at_every_level(run: tuple[dict[str, Any], str]) -> None:
    results, _ = run
    depth = results["sizes"]["depth"]
    for key, level in results["levels"].items():
        memory = level["memory"]
        assert memory["record_bytes"] > 0
        assert memory["index_bytes_per_pending_task"] > 0
        # measured right after the first enqueue step: the backlog and the measured tasks
        tasks = results["sizes"]["tasks"]
        assert memory["pending"] == tasks + (depth if key.startswith("deep") else 0)
        assert memory["index_keys"]
        if level["fill"]:
            assert level["fill"]["whole_fill_bytes_per_task"] > memory["record_bytes"]


def test_the_table_has_a_row_per_step_and_level_with_positive_figures(
    run: tuple[dict[str, Any], str],
) -> None:
    _, table = run
    for step in STEPS:
        for key, title in LEVELS.items():
            [row] = [line for line in table.splitlines()
                     if line.startswith(f"| {step} | {title} |")]  # fmt: skip
            cells = [c.strip() for c in row.strip("|").split("|")][2:]
            medians = [float(c.replace(",", "").split()[0]) for c in cells[:3]]
            assert all(m > 0 for m in medians), row
            assert (cells[3] == "-") == (key == "empty"), row
            if key != "empty":
                assert float(cells[3].split()[0]) > 0 and float(cells[4].split()[0]) > 0, row
            # the deep levels are compared with the control too
            assert (cells[6] != "-") == key.startswith("deep"), row
    assert table.count("| MEMORY USAGE of one record |") == len(LEVELS)
