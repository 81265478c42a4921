"""`python -m benchmarks.scaling`: end-to-end throughput as worker processes and queues grow.

Each run enqueues `--tasks` no-op tasks in bulk (`enqueue_many`, 10,000 a call), spread
round-robin over 1, 8 or 64 queues, then starts `conveyor worker --workers 1|2` listening
to all of them and times it from its start to the last task's INCR on a second Redis (the
suite's Conveyor driver and its handlers: async, concurrency 200). With several queues the
worker takes them in strict order (`-q q00,q01,...`: a queue only once those before it are
empty, so late claims try drained queues first) and, in rows of their own, weighted alike
(`q00:1,q01:1,...`: a random order per claim). Also the queue Redis's CPU per task over the
same span. Runs are interleaved (every cell once, then again), medians of `--repeats`.

python -m benchmarks.scaling                          # 20,000 tasks, 3 repeats
python -m benchmarks.scaling --smoke --json s.json    # tiny sizes, CI
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import click
import redis

from benchmarks import costs
from benchmarks.drivers import _common
from conveyor import Conveyor
from conveyor.tools.embedded import RedisServer

#: The suite's Conveyor driver: its `noop` task INCRs the counter on the second Redis.
APP = "conveyor_driver:app"
CONCURRENCY = 200
ORDERS = ("strict", "weighted")


@dataclass(frozen=True)
class Sizes:
    """How many tasks a run processes, over how many queues, how often."""

    tasks: int = 20_000
    queues: tuple[int, ...] = (1, 8, 64)
    processes: tuple[int, ...] = (1, 2)
    repeats: int = 3


#: CI: the extremes only (one queue and 64), in seconds.
SMOKE = Sizes(tasks=300, queues=(1, 64), repeats=1)


@dataclass(frozen=True)
class Cell:
    """One configuration: queues, the order the worker takes them in, processes."""

    queues: int
    order: str
    processes: int

    @property
    def row(self) -> str:
        return str(self.queues) if self.queues == 1 else f"{self.queues}, {self.order}"

    def names(self) -> list[str]:
        return [f"q{i:02d}" for i in range(self.queues)]

    def queue_option(self) -> str:
        weight = ":1" if self.order == "weighted" and self.queues > 1 else ""
        return ",".join(name + weight for name in self.names())


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cells(sizes: Sizes) -> list[Cell]:
    """Every cell; one queue needs no order of its own."""
    return [Cell(q, order, p) for q in sizes.queues for order in ORDERS
            if q > 1 or order == "strict" for p in sizes.processes]  # fmt: skip


def _driver(cell: Cell, url: str) -> _common.Driver:
    def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-m", "conveyor", "worker", APP, "--queues", cell.queue_option(),
                "--concurrency", str(CONCURRENCY), "--workers", str(processes),
                "--metrics-port", "0"]  # fmt: skip
        return argv, {"CONVEYOR_REDIS_URL": url, "CONVEYOR_LOG_LEVEL": "WARNING",
                      "BENCH_CONCURRENCY": str(CONCURRENCY)}  # fmt: skip

    return _common.Driver(dict, _no_producer, worker_command)


def _no_producer(url: str) -> _common.Producer:
    raise NotImplementedError("this command enqueues with Conveyor itself")


def enqueue(url: str, cell: Cell, n: int) -> None:
    """`n` no-op tasks over the cell's queues, round-robin, in bulk."""
    names = cell.names()
    app = Conveyor(redis_url=url, log_level="WARNING")
    for chunk in _common.chunks(range(n), 10_000):
        app.enqueue_many(app.message("noop", payload=_common.payload(i),
                                     queue=names[i % len(names)]) for i in chunk)  # fmt: skip
    app.close()


def process(cell: Cell, n: int, queue: RedisServer, counter: RedisServer) -> costs.Step:
    """Start the cell's workers on the tasks enqueued to `queue`; the step from their
    start to the n-th INCR on `counter` (its seconds and the queue Redis's INFO deltas)."""
    client, counts = redis.Redis.from_url(queue.url), redis.Redis.from_url(counter.url)
    step = costs.Step()
    before = costs.snapshot(client)
    started = time.perf_counter()
    workers = _common.Workers(_driver(cell, queue.url), cell.processes, counter.url)
    try:
        while int(counts.get(_common.COUNTER_KEY) or 0) < n:
            if not workers.alive():
                raise workers.failure("the workers exited")
            if time.perf_counter() - started > 600:
                raise workers.failure(f"{n} tasks took over 600 s")
            time.sleep(0.002)
        step.add(n, time.perf_counter() - started, before, costs.snapshot(client))
    finally:
        workers.stop()
        client.close()
        counts.close()
    return step


def one_run(cell: Cell, n: int, queue: RedisServer, counter: RedisServer) -> dict[str, Any]:
    """Enqueue, then time the workers from start to the n-th INCR."""
    client, counts = redis.Redis.from_url(queue.url), redis.Redis.from_url(counter.url)
    try:
        client.flushall()
        counts.flushall()
        enqueue(queue.url, cell, n)
        step = process(cell, n, queue, counter)
    finally:
        client.close()
        counts.close()
    seconds = step.seconds
    figures = step.figures()
    return {"n": n, "seconds": seconds, "rate": figures["rate"],
            "cpu_us_per_task": figures["cpu_us_per_task"],
            "commands_per_task": figures["commands_per_task"]}  # fmt: skip


def run(sizes: Sizes, binary: str) -> dict[str, Any]:
    """Every cell, interleaved, `repeats` times; the results document."""
    todo = cells(sizes)
    runs: dict[str, list[dict[str, Any]]] = {}
    with RedisServer(binary) as queue, RedisServer(binary) as counter:
        version = redis.Redis.from_url(queue.url).info("server")["redis_version"]
        for repeat in range(sizes.repeats):
            for cell in todo:
                result = one_run(cell, sizes.tasks, queue, counter)
                runs.setdefault(_key(cell), []).append(result)
                rate, cpu = result["rate"], result["cpu_us_per_task"]
                _log(f"[{repeat + 1}/{sizes.repeats}] {cell.row:13} {cell.processes} process(es)"
                     f": {rate:,.0f}/s, Redis {cpu:.1f} µs/task")  # fmt: skip
    return {
        "sizes": asdict(sizes),
        "redis": version,
        "concurrency": CONCURRENCY,
        "cells": [{**asdict(c), "key": _key(c), "row": c.row} for c in todo],
        "runs": runs,
        "summary": {key: costs.summarize(found) for key, found in runs.items()},
    }


def _key(cell: Cell) -> str:
    return f"{cell.queues}-{cell.order}-{cell.processes}"


def markdown(results: dict[str, Any]) -> str:
    """Rows: queues (and order); columns: tasks/s and Redis µs/task per process count."""
    s = results["sizes"]
    processes = s["processes"]
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for cell in results["cells"]:
        rows.setdefault(cell["row"], {})[cell["processes"]] = results["summary"][cell["key"]]
    head = "| queues | " + " | ".join(
        f"{p} process{'es' if p > 1 else ''}: tasks/s | Redis µs/task" for p in processes
    )
    lines = [
        f"{s['tasks']:,} no-op tasks enqueued in bulk, then timed from worker start to the "
        f"last INCR; concurrency {results['concurrency']} per process; medians of "
        f"{s['repeats']} interleaved runs (min-max); Redis {results['redis']}.",
        "",
        head + " |",
        "|---|" + "---|---|" * len(processes),
    ]
    for row, by_processes in rows.items():
        parts = [
            f"{costs.cell(by_processes[p]['rate'], 0)} | "
            f"{costs.cell(by_processes[p]['cpu_us_per_task'])}"
            for p in processes
        ]
        lines.append(f"| {row} | " + " | ".join(parts) + " |")
    if 1 in processes and 2 in processes:
        lines += ["", "| queues | 2 processes / 1 (tasks/s) |", "|---|---|"]
        for row, by_processes in rows.items():
            ratio = by_processes[2]["rate"]["median"] / by_processes[1]["rate"]["median"]
            lines.append(f"| {row} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--tasks", type=click.IntRange(min=1), help="Tasks per run (default 20,000).")
@click.option("--repeats", type=click.IntRange(min=1), help="Runs per cell (default 3).")
@costs.output_options
def main(
    tasks: int | None,
    repeats: int | None,
    smoke: bool,
    json_path: Path | None,
    markdown_path: Path | None,
    binary: str,
) -> None:
    """End-to-end throughput over 1, 8 and 64 queues with 1 and 2 worker processes."""
    sizes = SMOKE if smoke else Sizes()
    sizes = replace(sizes, tasks=tasks or sizes.tasks, repeats=repeats or sizes.repeats)
    results = run(sizes, binary)
    costs.publish(results, "benchmarks.scaling", markdown(results), json_path, markdown_path)


if __name__ == "__main__":
    main()
