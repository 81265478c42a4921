"""`python -m benchmarks.compare`: an A/B of two versions of Conveyor, in one run on one machine.

A change to the hot path has to show that it costs no speed, and two runs of the suite made
at different times on a shared machine differ by more than most regressions. So this runs
both versions in one go: interleaved (each repeat runs the baseline, then the current
version), on one private redis-server flushed before every run, a fresh process per run,
through the suite's own scenarios and the current tree's Conveyor driver. The driver uses
only the public API (`Conveyor`, `task`, `message`, `enqueue`, `enqueue_many`,
`enqueue_async`, `close`, `aclose`) and the `conveyor worker` command, so it runs unchanged
against either version. The baseline is installed, not editable, in a virtualenv of its
own, with its dependencies held at the running environment's versions so that only
Conveyor differs.

python -m benchmarks.compare --baseline HEAD                   # the uncommitted changes
python -m benchmarks.compare --baseline HEAD~1 --current HEAD --json ab.json --size 5000
python -m benchmarks.compare --baseline main --scenarios end_to_end --handlers sync
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import click

from benchmarks import report, suite, systems, venvs
from benchmarks.systems import DRIVERS, System
from conveyor.tools.embedded import RedisServer

ROOT = Path(__file__).resolve().parent.parent
#: the A/B's scenarios, and the suite's runs each one stands for
SCENARIOS: dict[str, tuple[str, ...]] = {
    "sync_enqueue": ("enqueue",),
    "async_enqueue": ("enqueue_async",),
    "bulk_enqueue": ("bulk",),
    "end_to_end": ("e2e_1", "e2e_2"),
    "end_to_end_large": ("e2e_1_large", "e2e_2_large"),
    "cost": ("cost",),
}
DEFAULT_SCENARIOS = "sync_enqueue,async_enqueue,bulk_enqueue,end_to_end"
TITLES = {
    **dict(report.COLUMNS),
    "e2e_1_large": "end to end, 1 process, large",
    "e2e_2_large": "end to end, 2 processes, large",
}
#: runs a side before a row says slower or faster
VERDICT_RUNS = 5
#: never pinned for the baseline: they build it, they do not run in it
_UNPINNED = {"conveyor-queue", "pip", "setuptools", "wheel"}


@dataclass(frozen=True)
class Side:
    """One version under test, and the interpreter that imports it from `home`."""

    label: str
    version: str
    commit: str
    python: Path
    home: Path

    def system(self, env: tuple[tuple[str, str], ...] = ()) -> System:
        return System(self.label, self.python, driver="conveyor", env=env)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def _pins() -> str:
    """The running environment's distributions as pip constraints."""
    pins = set()
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
        if name and name not in _UNPINNED:
            pins.add(f"{name}=={dist.version}")
    return "\n".join(sorted(pins)) + "\n"


def _at(label: str, ref: str, pins: str) -> Side:
    """`ref` installed in its own reused virtualenv under .bench/."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    python = venvs.python_at(commit, pins)
    return Side(label, _git("rev-parse", "--short", commit), commit, python, python.parents[1])


def _working_tree() -> Side:
    """The checkout as it is, uncommitted changes included, run by this interpreter."""
    version = f"working tree ({_git('describe', '--always', '--dirty')})"
    commit = _git("rev-parse", "HEAD")
    # end to end times the worker's imports: compile now, as pip did for the baseline, so
    # that the first run of an edited tree does not pay for it
    home = ROOT / "conveyor"
    subprocess.run([sys.executable, "-m", "compileall", "-q", home], capture_output=True)
    return Side("current", version, commit, Path(sys.executable), home)


def _check(side: Side) -> None:
    """Fail unless the driver's interpreter imports the version meant (not, say, the
    checkout through PYTHONPATH, which would compare a tree with itself)."""
    done = subprocess.run(
        [str(side.python), "-c", "import conveyor; conveyor.Conveyor; print(conveyor.__file__)"],
        cwd=DRIVERS, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise click.ClickException(f"{side.label} ({side.version}):\n{done.stderr[-2000:]}")
    origin = Path(done.stdout.strip()).resolve()
    if not origin.is_relative_to(side.home.resolve()):
        raise click.ClickException(
            f"{side.label}: {side.python} imports conveyor from {origin}, not {side.home} "
            "(install the checkout with `pip install -e .` and unset PYTHONPATH)"
        )
    _log(f"{side.label}: {side.version}, conveyor from {origin.parent}")


def _spread(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}" if values else "-"


def _verdict(baseline: list[float], current: list[float]) -> str:
    """Outside the noise when every run of one side beats every run of the other. Judged
    from `VERDICT_RUNS` a side, where noise alone does that once in 126 rows."""
    if min(len(baseline), len(current)) < VERDICT_RUNS:
        return "-"
    if max(current) < min(baseline):
        return "**slower**"
    return "faster" if min(current) > max(baseline) else "within"


def _row(key: str, baseline: report.Runs, current: report.Runs) -> str:
    a, b = report.rates(baseline), report.rates(current)
    medians = [f"{statistics.median(v):,.0f}" if v else "failed" for v in (a, b)]
    ratio = f"{statistics.median(b) / statistics.median(a):.3f}" if a and b else "-"
    cells = [TITLES[key], *medians, ratio, _spread(a), _spread(b), _verdict(a, b)]
    return "| " + " | ".join(cells) + " |"


#: the cost scenario's rows: (title, its value per task of a run, digits shown)
COST_ROWS: tuple[tuple[str, Callable[[dict[str, Any]], float], int], ...] = (
    ("Redis CPU µs per task", lambda run: _per_task(run, "cpu_us"), 1),
    ("of which the enqueue", lambda run: run["enqueue_cost"].get("cpu_us", 0) / run["n"], 1),
    ("Redis commands per task", lambda run: _per_task(run, "commands"), 1),
    ("round trips per task", lambda run: report.round_trips(run) or 0.0, 2),
    ("bytes per pending task", lambda run: run["enqueue_cost"]["used_memory"] / run["n"], 0),
)


def _per_task(run: dict[str, Any], measure: str) -> float:
    spent = run["enqueue_cost"].get(measure, 0) + run["process_cost"].get(measure, 0)
    return float(spent) / float(run["n"])


def _cost_rows(baseline: report.Runs, current: report.Runs) -> list[str]:
    """The cost scenario: what a task costs Redis (lower is better), side by side."""
    rows = []
    for title, value, digits in COST_ROWS:
        a, b = ([value(r) for r in runs if "n" in r] for runs in (baseline, current))
        medians = [f"{statistics.median(v):,.{digits}f}" if v else "failed" for v in (a, b)]
        ratio = f"{statistics.median(b) / statistics.median(a):.3f}" if a and b else "-"
        spreads = [f"{min(v):,.{digits}f}-{max(v):,.{digits}f}" if v else "-" for v in (a, b)]
        rows.append("| " + " | ".join([title, *medians, ratio, *spreads, "-"]) + " |")
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The side-by-side table, headed by the conditions it was measured in."""
    m, n, sides, runs = results["machine"], results["sizes"], results["sides"], results["runs"]
    lines = [
        f"Measured {m['date']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}, "
        f"Redis {m['redis']}; tasks/s, the median of {results['repeats']} run(s) a side, "
        f"baseline and current interleaved; {results.get('handlers', 'async')} handlers.",
        f"Baseline: {sides['baseline']['version']}. Current: {sides['current']['version']}. "
        f"Tasks per run: enqueue {n['enqueue']:,} (async: {n['concurrency']} coroutines), "
        f"bulk {n['bulk']:,}, end to end {n['e2e']:,} (large: {n['e2e_large']:,}).",
        f"Command: `{results['command']}`.",
        "",
        "| scenario | baseline | current | current/baseline | baseline min-max "
        "| current min-max | vs the noise |",
        "|---" * 7 + "|",
    ]
    for key in results["scenarios"]:
        baseline, current = runs["baseline"].get(key, []), runs["current"].get(key, [])
        if key == "cost":
            lines += _cost_rows(baseline, current)
        else:
            lines.append(_row(key, baseline, current))
    return "\n".join(lines)


def _failed(runs: dict[str, dict[str, report.Runs]]) -> bool:
    return any("error" in r for scenarios in runs.values() for rs in scenarios.values() for r in rs)


def _sizes(repeats: int, size: int | None) -> suite.Sizes:
    sizes = replace(suite.Sizes(), repeats=repeats)
    if size is None:
        return sizes
    return replace(sizes, enqueue=size, bulk=size, e2e=size, e2e_large=size, cost=size)


def _scenarios(text: str) -> list[str]:
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown or not chosen:
        raise click.BadParameter(
            f"choose from {', '.join(SCENARIOS)}; unknown: {', '.join(sorted(unknown))}",
            param_hint="--scenarios",
        )
    return [key for name in chosen for key in SCENARIOS[name]]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--baseline", required=True, help="The git ref to compare against.")
@click.option("--current", help="A git ref to compare instead of the working tree.")
@click.option("--scenarios", default=DEFAULT_SCENARIOS, show_default=True,
              help=f"Comma-separated, of: {', '.join(SCENARIOS)}.")  # fmt: skip
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--size", type=click.IntRange(min=1),
              help="Tasks per run in every scenario (default: the suite's sizes).")  # fmt: skip
@click.option("--handlers", type=click.Choice(["async", "sync"]), default="async",
              show_default=True, help="The driver's handlers: coroutines, or plain functions "
              "on the worker's threads.")  # fmt: skip
@click.option("--json", "json_path", type=click.Path(path_type=Path), help="Also write the runs.")
@click.option("--redis-server", "binary", default=suite.default_redis_server, show_default=True,
              help="The redis-server binary to run the private server with.")  # fmt: skip
def main(
    baseline: str,
    current: str | None,
    scenarios: str,
    repeats: int,
    size: int | None,
    handlers: str,
    json_path: Path | None,
    binary: str,
) -> None:
    """A/B two versions of Conveyor: the suite's throughput scenarios, interleaved."""
    names, sizes = _scenarios(scenarios), _sizes(repeats, size)
    pins = _pins()
    sides = [_at("baseline", baseline, pins)]
    sides.append(_at("current", current, pins) if current else _working_tree())
    for side in sides:
        _check(side)
    results: dict[str, Any] = {
        "machine": suite.machine(binary),
        "command": " ".join(["python", "-m", "benchmarks.compare", *sys.argv[1:]]),
        "repeats": repeats,
        "handlers": handlers,
        "sizes": asdict(sizes),
        "sides": {s.label: {"version": s.version, "commit": s.commit} for s in sides},
        "scenarios": names,
    }
    env = systems.SYNC_HANDLERS if handlers == "sync" else ()
    chosen = [s.system(env) for s in sides]
    with RedisServer(binary) as server:
        results["runs"] = suite.matrix(chosen, sizes, server, _log, names)
        if "cost" in names:
            with RedisServer(binary) as counter:
                for _ in range(repeats):
                    for key, run in suite.cost(chosen, sizes, server, counter, _log).items():
                        results["runs"][key].setdefault("cost", []).append(run)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=1))
    click.echo(markdown(results))
    if _failed(results["runs"]):
        raise click.ClickException("some runs failed (their errors are above)")


if __name__ == "__main__":
    main()
