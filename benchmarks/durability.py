"""`python -m benchmarks.durability`: what waiting for a replica costs an enqueue.

A master and one replica, each a redis-server on loopback. Each variant enqueues `--tasks`
tasks one at a time (sync, each call timed) and `--bulk` tasks with `enqueue_many`
(10,000 a call): plain, then `durable=True`, whose enqueue returns only once the replica
has the tasks (Redis WAIT). Variants run interleaved, medians of `--repeats`. On one
machine the replica is a loopback hop away: a replica across a network adds its round
trip to every durable enqueue.

python -m benchmarks.durability                        # 5,000 and 50,000 tasks, 5 repeats
python -m benchmarks.durability --smoke --json d.json  # tiny sizes, CI
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import click
import redis

from benchmarks import costs
from benchmarks.drivers import _common
from benchmarks.scaling import _log
from conveyor import Conveyor
from conveyor.tools.embedded import RedisServer

VARIANTS = {"plain": False, "durable": True}


@dataclass(frozen=True)
class Sizes:
    """Tasks per run, one at a time and in bulk, and runs per variant."""

    tasks: int = 5_000
    bulk: int = 50_000
    repeats: int = 5


SMOKE = Sizes(tasks=200, bulk=2_000, repeats=1)


def one_run(durable: bool, sizes: Sizes, master: RedisServer) -> dict[str, float]:
    """Enqueue one at a time, then in bulk; rates and the single enqueues' latencies."""
    client = redis.Redis.from_url(master.url)
    client.flushall()
    app = Conveyor(redis_url=master.url, log_level="WARNING")
    try:
        app.enqueue("noop", payload=0)  # connects and registers the queue
        latencies = []
        started = time.perf_counter()
        for i in range(sizes.tasks):
            before = time.perf_counter()
            app.enqueue("noop", payload=_common.payload(i), durable=durable)
            latencies.append(time.perf_counter() - before)
        single = sizes.tasks / (time.perf_counter() - started)
        started = time.perf_counter()
        for chunk in _common.chunks(range(sizes.bulk), 10_000):
            app.enqueue_many([app.message("noop", payload=_common.payload(i), durable=durable)
                              for i in chunk])  # fmt: skip
        bulk = sizes.bulk / (time.perf_counter() - started)
    finally:
        app.close()
        client.close()
    cuts = statistics.quantiles(latencies, n=100)
    return {"single_rate": single, "bulk_rate": bulk,
            "p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}  # fmt: skip


def run(sizes: Sizes, binary: str) -> dict[str, Any]:
    """Every variant, interleaved, `repeats` times; the results document."""
    runs: dict[str, list[dict[str, float]]] = {}
    with RedisServer(binary) as master:
        args = ("--replicaof", "127.0.0.1", str(master.port))
        with RedisServer(binary, extra_args=args) as replica:
            on_master = redis.Redis.from_url(master.url)
            while on_master.wait(1, 100) < 1:  # until the replica is in sync
                pass
            version = on_master.info("server")["redis_version"]
            on_master.close()
            for repeat in range(sizes.repeats):
                for variant, durable in VARIANTS.items():
                    result = one_run(durable, sizes, master)
                    runs.setdefault(variant, []).append(result)
                    _log(f"[{repeat + 1}/{sizes.repeats}] {variant:8}: "
                         f"{result['single_rate']:,.0f}/s one at a time "
                         f"(p50 {result['p50_ms']:.3f} ms), "
                         f"{result['bulk_rate']:,.0f}/s in bulk")  # fmt: skip
            assert replica.ping()
    summary = {variant: costs.summarize(found) for variant, found in runs.items()}
    return {"sizes": asdict(sizes), "redis": version, "runs": runs, "summary": summary}


def markdown(results: dict[str, Any]) -> str:
    """One row per figure: plain, durable, and their ratio."""
    s, summary = results["sizes"], results["summary"]
    plain, durable = summary["plain"], summary["durable"]
    rows = [
        ("enqueue one at a time, tasks/s", "single_rate", 0),
        ("one enqueue, p50 ms", "p50_ms", 3),
        ("one enqueue, p99 ms", "p99_ms", 3),
        ("bulk enqueue, tasks/s", "bulk_rate", 0),
    ]
    lines = [
        f"A master and one replica on loopback, Redis {results['redis']}; {s['tasks']:,} "
        f"tasks enqueued one at a time and {s['bulk']:,} in bulk per run; medians of "
        f"{s['repeats']} interleaved runs (min-max).",
        "",
        "| figure | plain | durable=True | durable/plain |",
        "|---|---|---|---|",
    ]
    for label, key, digits in rows:
        ratio = durable[key]["median"] / plain[key]["median"]
        lines.append(f"| {label} | {costs.cell(plain[key], digits)} | "
                     f"{costs.cell(durable[key], digits)} | {ratio:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--tasks", type=click.IntRange(min=100), help="One at a time (default 5,000).")
@click.option("--bulk", type=click.IntRange(min=1), help="In bulk (default 50,000).")
@click.option("--repeats", type=click.IntRange(min=1), help="Runs per variant (default 5).")
@costs.output_options
def main(
    tasks: int | None,
    bulk: int | None,
    repeats: int | None,
    smoke: bool,
    json_path: Path | None,
    markdown_path: Path | None,
    binary: str,
) -> None:
    """The cost of durable=True: enqueue rates and latencies, plain and durable."""
    sizes = SMOKE if smoke else Sizes()
    sizes = replace(sizes, tasks=tasks or sizes.tasks, bulk=bulk or sizes.bulk,
                    repeats=repeats or sizes.repeats)  # fmt: skip
    results = run(sizes, binary)
    costs.publish(results, "benchmarks.durability", markdown(results), json_path, markdown_path)


if __name__ == "__main__":
    main()
