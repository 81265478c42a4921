"""`python -m benchmarks.cluster`: a single Redis and a 3-master Redis Cluster, side by side.

Both deployments run at once, each as deployed: the single Redis is a master with a
replica; the Cluster is the tests' local one (3 masters, a replica each; see
`cluster_nodes.py`). A run takes `--queues` queues, as many on each master of the Cluster,
and on one deployment: enqueues `--singles` no-op tasks one at a time (sync), then
`--concurrent` with `enqueue_async` from 64 coroutines, then `--bulk` in bulk
(`enqueue_many`, 10,000 a call), round-robin over the queues, from this process; then
starts `conveyor worker --workers N` on all the queues (equal weights) and times it from
its start to the last task's INCR on a third Redis (the suite's Conveyor driver: async
handlers, concurrency 200). Each phase is read from every node's INFO: Redis CPU, commands,
requests (round trips) and bytes; the producer's and the workers' own CPU beside them. Before
each run, an idle second measures what the nodes spend with no work (their cron, the
Cluster's bus). A third variant runs the Cluster with every queue on one master
(`one_master`): the same work with no turn-taking between masters, which separates what a
Cluster costs from what spreading over masters costs on a machine whose masters share
cores. A fourth (`split`) sends every task to ONE queue split into `--queues` shards
(`Conveyor(shards=...)`, conveyor/shards.py), named so that its shards fall evenly on the
masters: what a hot queue costs split over three masters, beside `one_master`, where it
would sit on one. Runs take turns between the variants, medians of `--repeats`.

On a 2-core machine the Cluster's three masters, their replicas, the workers and the
producer share two cores: the rates cannot show the Cluster scaling; the CPU each master
spends per task, and how the work splits between the masters, they can.

python -m benchmarks.cluster                         # 60,000 tasks a run, 5 repeats
python -m benchmarks.cluster --quick --json c.json   # tiny sizes (CI's test)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import click
import redis

from benchmarks import cluster_figures, cluster_nodes, costs
from benchmarks.cluster_nodes import Deployment
from benchmarks.drivers import _common
from benchmarks.scaling import _log
from conveyor import Conveyor
from conveyor.shards import shard_names
from conveyor.tools.embedded import RedisServer

#: The suite's Conveyor driver: its `noop` task INCRs the counter on the third Redis.
APP = "conveyor_driver:app"
CONCURRENCY = 200
#: The workers' CPU per task is counted once this share of the tasks is done (start-up
#: and imports are not a per-task cost).
WARM = 0.1
#: Coroutines enqueueing at once in the concurrent phase (the suite's figure).
CALLERS = 64


@dataclass(frozen=True)
class Sizes:
    """Tasks per run (one at a time, from coroutines, in bulk), queues, worker processes,
    runs, and the idle seconds before each run."""

    singles: int = 10_000
    concurrent: int = 20_000
    bulk: int = 50_000
    queues: int = 12
    processes: int = 2
    repeats: int = 5
    #: seconds each run first leaves the deployment idle, to measure its background CPU
    idle: float = 1.0


QUICK = Sizes(singles=60, concurrent=200, bulk=600, queues=6, processes=1, repeats=1, idle=0.2)


@dataclass(frozen=True)
class Target:
    """Where a variant's tasks go: the queues producers name, in turns, and those of them
    split into shards (as `Conveyor(shards=...)` takes it)."""

    queues: list[str]
    shards: dict[str, int] = field(default_factory=dict)

    @property
    def served(self) -> list[str]:
        """Every queue the tasks land in: each shard of a split queue."""
        return [s for q in self.queues for s in shard_names(q, self.shards.get(q, 1))]

    def environment(self) -> dict[str, str]:
        """The workers' settings: the same split as the producers'."""
        if not self.shards:
            return {}
        return {"CONVEYOR_SHARDS": ",".join(f"{q}:{n}" for q, n in self.shards.items())}


def _worker_command(
    url: str, target: Target, processes: int
) -> Callable[[int], tuple[list[str], dict[str, str]]]:
    def command(_: int) -> tuple[list[str], dict[str, str]]:
        queues = target.queues
        weighted = queues[0] if len(queues) == 1 else ",".join(f"{q}:1" for q in queues)
        argv = [sys.executable, "-m", "conveyor", "worker", APP, "--queues", weighted,
                "--concurrency", str(CONCURRENCY), "--workers", str(processes),
                "--metrics-port", "0"]  # fmt: skip
        return argv, {"CONVEYOR_REDIS_URL": url, "CONVEYOR_LOG_LEVEL": "WARNING",
                      "BENCH_CONCURRENCY": str(CONCURRENCY), **target.environment()}  # fmt: skip

    return command


def _no_producer(url: str) -> _common.Producer:
    raise NotImplementedError("this command enqueues with Conveyor itself")


class Phase:
    """A measured phase: its wall and CPU seconds, and every node's INFO deltas."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.nodes: dict[str, dict[str, int]] = {}

    def __enter__(self) -> Phase:
        self._before = self.deployment.snapshot()
        self._started, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._started
        self.cpu_seconds = time.process_time() - self._cpu
        after = self.deployment.snapshot()
        self.nodes = {k: cluster_nodes.delta(self._before[k], v) for k, v in after.items()}

    def record(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "cpu_seconds": self.cpu_seconds, "nodes": self.nodes}


def _message(app: Conveyor, i: int, queues: list[str]) -> Any:
    return app.message("noop", payload=_common.payload(i), queue=queues[i % len(queues)])


def enqueue(deployment: Deployment, target: Target, sizes: Sizes) -> dict[str, Any]:
    """The singles one at a time, then the bulk, round-robin over the target's queues."""
    queues = target.queues
    app = Conveyor(redis_url=deployment.url, log_level="WARNING", shards=target.shards)
    try:
        with Phase(deployment) as one:
            for i in range(sizes.singles):
                app.enqueue("noop", payload=_common.payload(i), queue=queues[i % len(queues)])
        with Phase(deployment) as concurrent:
            asyncio.run(_enqueue_async(deployment.url, target, sizes))
        with Phase(deployment) as bulk:
            for chunk in _common.chunks(range(sizes.bulk), 10_000):
                app.enqueue_many(_message(app, i, queues) for i in chunk)
    finally:
        app.close()
    return {"one": one.record(), "async": concurrent.record(), "bulk": bulk.record()}


async def _enqueue_async(url: str, target: Target, sizes: Sizes) -> None:
    """`concurrent` tasks from `CALLERS` coroutines sharing one app, each in turn."""
    queues = target.queues
    app = Conveyor(redis_url=url, log_level="WARNING", shards=target.shards)

    async def share(first: int) -> None:
        for i in range(first, sizes.concurrent, CALLERS):
            queue = queues[i % len(queues)]
            await app.enqueue_async("noop", payload=_common.payload(i), queue=queue)

    try:
        await asyncio.gather(*(share(c) for c in range(CALLERS)))
    finally:
        await app.aclose()


def process(
    deployment: Deployment, target: Target, n: int, processes: int, counter: RedisServer
) -> dict[str, Any]:
    """Start the workers; the phase from their start to the n-th INCR on `counter`, and
    their CPU per task after the first `WARM` share of the tasks."""
    counts = redis.Redis.from_url(counter.url)
    driver = _common.Driver(dict, _no_producer, _worker_command(deployment.url, target, processes))
    workers: _common.Workers | None = None
    try:
        with Phase(deployment) as phase:
            workers = _common.Workers(driver, processes, counter.url)
            (first, first_cpu), cpu = _drain(workers, counts, n)
    finally:
        if workers is not None:
            workers.stop()
        counts.close()
    worker_cpu = (cpu - first_cpu) / max(1, n - first)
    return {**phase.record(), "worker_cpu_us_per_task": worker_cpu * 1e6}


def _drain(
    workers: _common.Workers, counts: redis.Redis, n: int
) -> tuple[tuple[int, float], float]:
    """Wait for the n-th INCR: the count and the workers' CPU seconds once `WARM` of the
    tasks are done, and their CPU seconds at the end."""
    started, warm_at = time.perf_counter(), max(1, int(n * WARM))
    warm: tuple[int, float] | None = None
    while (done := int(counts.get(_common.COUNTER_KEY) or 0)) < n:
        if warm is None and done >= warm_at:
            warm = (done, workers.cpu_seconds())
        if not workers.alive():
            raise workers.failure("the workers exited")
        if time.perf_counter() - started > 600:
            raise workers.failure(f"{n} tasks took over 600 s")
        time.sleep(0.002)
    return warm or (0, 0.0), workers.cpu_seconds()


def one_run(
    deployment: Deployment, target: Target, sizes: Sizes, counter: RedisServer
) -> dict[str, Any]:
    """Enqueue, then process; every phase's record, and each queue's tasks (each shard's,
    for a split queue), as counted in Redis before the workers start."""
    deployment.flush()
    counts = redis.Redis.from_url(counter.url)
    counts.flushall()
    counts.close()
    enqueued = (sizes.singles, sizes.concurrent, sizes.bulk)
    n = sum(enqueued)
    with Phase(deployment) as idle:  # what the nodes spend with no work: cron, cluster bus
        time.sleep(sizes.idle)
    phases = {"idle": idle.record(), **enqueue(deployment, target, sizes)}
    tasks = counted(deployment, target, n)
    phases["process"] = process(deployment, target, n, sizes.processes, counter)
    return {"n": n, "singles": sizes.singles, "concurrent": sizes.concurrent, "bulk": sizes.bulk,
            "tasks": tasks, "phases": phases}  # fmt: skip


def counted(deployment: Deployment, target: Target, n: int) -> dict[str, int]:
    """Each served queue's (each shard's) waiting tasks; raises RuntimeError unless they
    are the `n` enqueued, since a task on a queue the workers do not serve never runs."""
    tasks = {q: deployment.ready(q) for q in target.served}
    if sum(tasks.values()) != n:
        raise RuntimeError(f"{n} tasks enqueued, {sum(tasks.values())} waiting: {tasks}")
    return tasks


def run(sizes: Sizes, binary: str) -> dict[str, Any]:
    """The single Redis, the Cluster, the Cluster with every queue on one master, and the
    Cluster with one queue split into as many shards, in turn, `repeats` times; the results
    document."""
    runs: dict[str, list[dict[str, Any]]] = {}
    machine = cluster_figures.machine()
    with (
        cluster_nodes.single(binary) as single,
        cluster_nodes.cluster(binary) as cluster,
        RedisServer(binary) as counter,
    ):
        queues = cluster_nodes.spread_queues(cluster, sizes.queues)
        one_master = cluster_nodes.spread_queues(cluster, sizes.queues, on=["m1"])
        hot = cluster_nodes.split_queue(cluster, sizes.queues)
        split = Target([hot], {hot: sizes.queues})
        variants = {"single": (single, Target(queues)),
                    "cluster": (cluster, Target(queues)),
                    "one_master": (cluster, Target(one_master)),
                    "split": (cluster, split)}  # fmt: skip
        for repeat in range(sizes.repeats):
            for name, (deployment, target) in variants.items():
                found = one_run(deployment, target, sizes, counter)
                found["figures"] = cluster_figures.figures(found, deployment)
                runs.setdefault(name, []).append(found)
                _log(f"[{repeat + 1}/{sizes.repeats}] {name:10}: "
                     + cluster_figures.brief(found["figures"]))  # fmt: skip
        return {
            "sizes": asdict(sizes),
            "redis": single.version(),
            "concurrency": CONCURRENCY,
            "machine": {**machine, "load_average_after": os.getloadavg()},
            "queues": {q: cluster.master_of(q) for q in queues},
            "one_master_queues": {q: cluster.master_of(q) for q in one_master},
            "split_queue": hot,
            "split_queues": {q: cluster.master_of(q) for q in split.served},
            "nodes": {d.name: cluster_nodes.describe(d) for d in (single, cluster)},
            "runs": runs,
            "summary": {name: costs.summarize([r["figures"] for r in found])
                        for name, found in runs.items()},
        }  # fmt: skip


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help="Tiny sizes, one repeat (as --smoke).")
@click.option("--singles", type=click.IntRange(min=0), help="Enqueued one at a time (10,000).")
@click.option(
    "--concurrent", type=click.IntRange(min=0), help="Enqueued by 64 coroutines (20,000)."
)
@click.option("--bulk", type=click.IntRange(min=1), help="Enqueued in bulk (50,000).")
@click.option(
    "--queues", type=click.IntRange(min=3), help="A multiple of 3 (12); the split's shards too."
)
@click.option("--processes", type=click.IntRange(min=1), help="Worker processes (2).")
@click.option("--repeats", type=click.IntRange(min=1), help="Runs per deployment (5).")
@costs.output_options
def main(
    quick: bool,
    singles: int | None,
    concurrent: int | None,
    bulk: int | None,
    queues: int | None,
    processes: int | None,
    repeats: int | None,
    smoke: bool,
    json_path: Path | None,
    markdown_path: Path | None,
    binary: str,
) -> None:
    """A single Redis and a 3-master Cluster: tasks/s, and Redis CPU per task per master."""
    sizes = QUICK if quick or smoke else Sizes()
    given = {"singles": singles, "concurrent": concurrent, "bulk": bulk, "queues": queues,
             "processes": processes, "repeats": repeats}  # fmt: skip
    sizes = replace(sizes, **{k: v for k, v in given.items() if v is not None})
    if sizes.queues % 3:
        raise click.BadParameter("a multiple of 3, spread evenly", param_hint="--queues")
    results = run(sizes, binary)
    text = cluster_figures.markdown(results)
    costs.publish(results, "benchmarks.cluster", text, json_path, markdown_path)


if __name__ == "__main__":
    main()
