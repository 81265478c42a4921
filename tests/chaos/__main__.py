"""The soak: `python -m tests.chaos --minutes N [--json PATH]`.

After the scenarios, the long workflow proofs run too (`--no-workflows` skips them).

Runs every scenario for its share of N minutes (10,000 tasks in all, or as many as fit),
prints a markdown table and writes the reports as JSON. Exit code 1 if any invariant
failed. The network-namespace scenarios (partitions.py) run too where this is root; where
not, each is left out with the reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.chaos.partitions import NETNS_SCENARIOS, requirement
from tests.chaos.report import Report, markdown
from tests.chaos.runner import run_scenario
from tests.chaos.scenarios import SCENARIOS, Scenario, Size
from tests.workflows.soak import run_proofs

#: Tasks of a full soak, shared among the scenarios.
SOAK_TASKS = 10_000
#: Seconds each scenario spends outside its production window (start, settle, retention).
OVERHEAD = 7.0
#: Most tasks a scenario enqueues per second of its window.
MAX_RATE = 40.0


def sizes(minutes: float, scenarios: list[Scenario]) -> Size:
    """The size of each scenario when `scenarios` share `minutes`."""
    budget = minutes * 60 / len(scenarios)
    window = max(5.0, budget - OVERHEAD)
    tasks = min(math.ceil(SOAK_TASKS / len(scenarios)), int(window * MAX_RATE))
    return Size(tasks, window)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="total duration")
    parser.add_argument("--json", type=Path, help="write the reports here")
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument("--tasks", type=int, help="tasks per scenario (overrides --minutes)")
    parser.add_argument("--window", type=float, help="production seconds per scenario")
    parser.add_argument("--keep", type=Path, help="keep logs and data under this directory")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-workflows", action="store_true", help="skip the long workflow proofs after"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    every = [*SCENARIOS, *NETNS_SCENARIOS]
    chosen = [s for s in every if not args.only or s.name in args.only.split(",")]
    for scenario in [s for s in chosen if s.netns]:  # root only; say why one is left out
        if (reason := requirement(scenario)) is not None:
            print(f"skipping {scenario.name}: {reason}", file=sys.stderr)
            chosen.remove(scenario)
    if not chosen:
        print(f"no scenario matches {args.only!r}", file=sys.stderr)
        return 2
    size = sizes(args.minutes, chosen)
    size = Size(args.tasks or size.tasks, args.window or size.window)
    began, started_at = time.monotonic(), datetime.now(UTC)
    reports: list[Report] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-chaos-") as tmp:
        root = args.keep or Path(tmp)
        for i, scenario in enumerate(chosen):
            print(f"[{time.monotonic() - began:6.0f}s] {scenario.name}: "
                  f"{size.tasks} tasks over {size.window:.0f}s", flush=True)  # fmt: skip
            report = run_scenario(
                scenario, size, root / scenario.name, seed=args.seed + i, keep=bool(args.keep)
            )
            reports.append(report)
            for line in report.violations + report.notes:
                print(f"    {'FAIL' if line in report.violations else 'note'}: {line}")
    elapsed = time.monotonic() - began
    print(f"\n{markdown(reports)}\n")
    command = "python -m tests.chaos " + " ".join(argv)
    print(f"`{command.strip()}`: {started_at:%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} minutes")
    if args.json:
        summary = {
            "command": command.strip(),
            "started": started_at.isoformat(),
            "minutes": elapsed / 60,
            "scenarios": [r.to_json() for r in reports],
        }
        args.json.write_text(json.dumps(summary, indent=2))
    passed = all(r.passed for r in reports)
    if not (args.only or args.no_workflows):  # a chord of 1,000 and a chain of 50 under kills
        print("\nworkflow proofs (python -m tests.workflows):", flush=True)
        passed &= run_proofs(["chord", "chain"])
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
