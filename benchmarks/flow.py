"""`python -m benchmarks.flow`: what each flow-control option costs, per task.

Each variant enqueues `--tasks` no-op tasks in bulk (`enqueue_many`, 10,000 a call) with
one option set, then runs `conveyor worker` (one process, the suite's Conveyor driver:
async handlers, concurrency 200) until the last task's INCR on a second Redis. The limits
are set so that they never bind (a rate of a million a second, a concurrency of a
million): what is measured is the bookkeeping, not the throttling. Per variant: the Redis
CPU, commands and script calls per task of the enqueue and of the processing, and both
rates. Variants run interleaved (each once, then again), medians of `--repeats`.

python -m benchmarks.flow                          # 20,000 tasks, 3 repeats
python -m benchmarks.flow --smoke --json f.json    # tiny sizes, CI
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import click
import redis

from benchmarks import costs
from benchmarks.drivers import _common
from benchmarks.scaling import Cell, _log, process
from conveyor import Conveyor
from conveyor.tools.embedded import RedisServer

#: Each variant's options for task `i`.
VARIANTS: dict[str, Callable[[int], dict[str, Any]]] = {
    "none": lambda i: {},
    "unique": lambda i: {"unique": True},
    "rate_limit": lambda i: {"rate_limit": "1000000/s"},
    "concurrency": lambda i: {"concurrency": 1_000_000},
    "group_key (10 groups)": lambda i: {"group_key": f"g{i % 10}"},
}
ONE_QUEUE = Cell(1, "strict", 1)


@dataclass(frozen=True)
class Sizes:
    """Tasks per run, and runs per variant."""

    tasks: int = 20_000
    repeats: int = 3


SMOKE = Sizes(tasks=300, repeats=1)


def one_run(variant: str, n: int, queue: RedisServer, counter: RedisServer) -> dict[str, Any]:
    """Enqueue `n` tasks with the variant's options, then process them; both measured."""
    client, counts = redis.Redis.from_url(queue.url), redis.Redis.from_url(counter.url)
    options = VARIANTS[variant]
    enqueued = costs.Step()
    try:
        client.flushall()
        counts.flushall()
        app = Conveyor(redis_url=queue.url, log_level="WARNING")
        for chunk in _common.chunks(range(n), 10_000):
            messages = [app.message("noop", payload=_common.payload(i), queue="q00", **options(i))
                        for i in chunk]  # fmt: skip
            enqueued.run(client, len(messages), functools.partial(app.enqueue_many, messages))
        app.close()
        processed = process(ONE_QUEUE, n, queue, counter)
    finally:
        client.close()
        counts.close()
    return {"enqueue": enqueued.figures(), "process": processed.figures()}


def run(sizes: Sizes, binary: str) -> dict[str, Any]:
    """Every variant, interleaved, `repeats` times; the results document."""
    runs: dict[str, list[dict[str, Any]]] = {}
    with RedisServer(binary) as queue, RedisServer(binary) as counter:
        version = redis.Redis.from_url(queue.url).info("server")["redis_version"]
        for repeat in range(sizes.repeats):
            for variant in VARIANTS:
                result = one_run(variant, sizes.tasks, queue, counter)
                runs.setdefault(variant, []).append(result)
                e, p = result["enqueue"], result["process"]
                _log(f"[{repeat + 1}/{sizes.repeats}] {variant:22}: enqueue "
                     f"{e['cpu_us_per_task']:.1f} µs, process {p['cpu_us_per_task']:.1f} µs"
                     f" per task, {p['rate']:,.0f} tasks/s")  # fmt: skip
    summary = {
        variant: {
            step: costs.summarize([r[step] for r in found]) for step in ("enqueue", "process")
        }
        for variant, found in runs.items()
    }
    return {"sizes": asdict(sizes), "redis": version, "runs": runs, "summary": summary}


def markdown(results: dict[str, Any]) -> str:
    """One row per variant: Redis µs and commands per task, each step; rates; ratio."""
    s, summary = results["sizes"], results["summary"]
    base = summary["none"]["process"]["rate"]["median"]
    lines = [
        f"{s['tasks']:,} no-op tasks, enqueued in bulk then processed by one worker process "
        f"(async, concurrency 200); limits that never bind; medians of {s['repeats']} "
        f"interleaved runs (min-max); Redis {results['redis']}.",
        "",
        "| option | enqueue: Redis µs/task | commands | process: Redis µs/task | commands "
        "| tasks/s | vs none |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, steps in summary.items():
        e, p = steps["enqueue"], steps["process"]
        lines.append(
            f"| {variant} | {costs.cell(e['cpu_us_per_task'])} | "
            f"{e['commands_per_task']['median']:.1f} | {costs.cell(p['cpu_us_per_task'])} | "
            f"{p['commands_per_task']['median']:.1f} | {costs.cell(p['rate'], 0)} | "
            f"{p['rate']['median'] / base:.2f} |"
        )
    return "\n".join(lines) + "\n"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--tasks", type=click.IntRange(min=1), help="Tasks per run (default 20,000).")
@click.option("--repeats", type=click.IntRange(min=1), help="Runs per variant (default 3).")
@costs.output_options
def main(
    tasks: int | None,
    repeats: int | None,
    smoke: bool,
    json_path: Path | None,
    markdown_path: Path | None,
    binary: str,
) -> None:
    """The Redis cost and end-to-end rate of each flow-control option."""
    sizes = SMOKE if smoke else Sizes()
    sizes = replace(sizes, tasks=tasks or sizes.tasks, repeats=repeats or sizes.repeats)
    results = run(sizes, binary)
    costs.publish(results, "benchmarks.flow", markdown(results), json_path, markdown_path)


if __name__ == "__main__":
    main()
