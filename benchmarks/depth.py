"""`python -m benchmarks.depth`: does a task cost Redis the same on a deep queue as on an
empty one? (The target: within 10 %.)

Four private redis-servers, measured side by side: each step runs in slices (10 of 500
tasks), every slice on the four in turn (who goes first rotates), and each ratio between
levels pairs the figures of one repeat before taking the median, so a change of load on a
shared machine hits every level alike:

- empty: the queue holds only the measured tasks;
- deep, backlog behind: a backlog of `--depth` tasks at priority -1 sits in the same
  queue, so the measured (default-priority) tasks go in ahead of it and are the ones
  claimed, while the index keeps holding the whole backlog: the cost of a big index;
- deep, backlog ahead: the backlog has the same priority, so measured tasks join behind
  it and every claim takes the backlog's oldest tasks: the steady state of a queue that
  never catches up. Its depth stays the same (as many enqueued as claimed);
- control, backlog in another queue: the same backlog in the same Redis, but in another
  queue, so the measured queue is as small as the empty level's. What this level costs
  above the empty one comes from a big Redis (its keyspace, the CPU's caches), not from
  the measured queue's index; what the deep levels cost above it, from the index.

Each repeat, on each server: enqueue `--tasks` one at a time (`Conveyor.enqueue`), claim
and ack them one per call, then enqueue as many in bulk (not measured) and claim and ack
them `--batch` per call, as a worker does (`claim_batch`), through the broker's own claim
and ack operations. Per task: Redis CPU (INFO used_cpu_user + used_cpu_sys), commands
(the scripts and what runs inside them, as INFO counts them), script calls, and the
client's rate; medians with min-max. Memory: used_memory per pending task while filling
the backlog (its first and last chunk) and during the measured enqueues, next to MEMORY
USAGE of one task's record and of the queue's index keys per entry. The lease is an hour,
so no claim's bookkeeping expires in the middle of a step and blurs the memory figures.

python -m benchmarks.depth                               # 1,000,000 deep, 5 repeats
python -m benchmarks.depth --smoke --json depth.json     # tiny sizes, CI
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import click
import redis

from benchmarks import costs
from benchmarks.drivers._common import payload
from conveyor import Conveyor
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer

QUEUE = "bench"
TASK = "noop"
WORKER = "bench-depth"
RESULT = b"null"
#: Where a control level keeps its backlog: another queue of the same Redis.
ELSEWHERE = "elsewhere"
#: The levels: the key, the backlog's queue and priority (None: no backlog), the title.
LEVELS: tuple[tuple[str, str | None, int | None, str], ...] = (
    ("empty", None, None, "empty"),
    ("deep_behind", QUEUE, -1, "deep, backlog behind (priority -1)"),
    ("deep_ahead", QUEUE, 0, "deep, backlog ahead (same priority)"),
    ("keyspace_only", ELSEWHERE, 0, "control: backlog in another queue"),
)
TARGET = 0.10


@dataclass(frozen=True)
class Sizes:
    """How deep the backlog is, and how much each step measures."""

    depth: int = 1_000_000
    tasks: int = 5_000
    #: each step's tasks are measured in this many slices, the levels taking turns
    slices: int = 10
    batch: int = Settings().claim_batch
    repeats: int = 5
    fill_chunk: int = 10_000


SMOKE = Sizes(depth=3_000, tasks=200, slices=2, repeats=1, fill_chunk=1_000)


@dataclass
class Level:
    """One private Redis and the app that measures it."""

    key: str
    backlog_queue: str | None
    backlog_priority: int | None
    title: str
    app: Conveyor
    client: redis.Redis
    #: the id of the last task the enqueue step enqueued
    last_id: str = ""


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fill(level: Level, sizes: Sizes) -> dict[str, Any]:
    """Enqueue the backlog in bulk chunks; used_memory per task of its first and last chunk."""
    queue, priority, app = level.backlog_queue, level.backlog_priority, level.app
    marks = [(0, costs.snapshot(level.client)["used_memory"])]
    started = time.perf_counter()
    for start in range(0, sizes.depth, sizes.fill_chunk):
        size = min(sizes.fill_chunk, sizes.depth - start)
        app.enqueue_many(app.message(TASK, payload=payload(start + i), queue=queue,
                                     priority=priority) for i in range(size))  # fmt: skip
        marks.append((start + size, costs.snapshot(level.client)["used_memory"]))
    seconds = time.perf_counter() - started

    def per_task(a: tuple[int, int], b: tuple[int, int]) -> float:
        return (b[1] - a[1]) / (b[0] - a[0])

    return {
        "depth": sizes.depth,
        "rate": sizes.depth / seconds,
        "first_chunk_bytes_per_task": per_task(marks[0], marks[1]),
        "last_chunk_bytes_per_task": per_task(marks[-2], marks[-1]),
        "whole_fill_bytes_per_task": per_task(marks[0], marks[-1]),
        "used_memory": marks[-1][1],
    }


def enqueue_one_by_one(level: Level, n: int) -> str:
    """`n` default-priority tasks, one `Conveyor.enqueue` each; the last one's id."""
    last = ""
    for i in range(n):
        last = level.app.enqueue(TASK, payload=payload(i), queue=QUEUE).id
    return last


def claim_and_ack(level: Level, n: int, per_call: int) -> None:
    """Claim `n` tasks `per_call` at a time, acking each claim's tasks in one call."""
    broker = level.app.sync_broker()
    left = n
    while left:
        claim = broker.run(broker.ops.claim(QUEUE, min(per_call, left), WORKER))
        if not claim.tasks:
            raise RuntimeError(f"{level.key}: the queue ran dry with {left} tasks to claim")
        [acked] = broker.execute([broker.ops.ack([(t, RESULT) for t in claim.tasks])])
        if not all(acked):
            raise RuntimeError(f"{level.key}: an ack lost its lease")
        left -= len(claim.tasks)


def key_memory(level: Level, task_id: str) -> dict[str, Any]:
    """MEMORY USAGE of one task's record, and of the queue's other keys (its index) per
    pending task. The keys are found by their common start, not named one by one, so
    this keeps working when the index's layout changes."""
    ops = level.app.sync_broker().ops
    keys = ops.queue_keys(QUEUE)
    skipped = (keys.task_prefix, keys.claim_request(""))
    index: dict[str, dict[str, Any]] = {}
    for raw in level.client.scan_iter(match=keys.base + "*", count=10_000):
        key = raw.decode()
        if key.startswith(skipped):
            continue
        index[key.removeprefix(keys.base)] = {
            "type": _text(level.client.type(key)),
            "encoding": _text(level.client.object("encoding", key)),
            "bytes": level.client.memory_usage(key, samples=0),
        }
    stats = level.app.inspector.queue(QUEUE)
    pending = stats.pending if stats else 0
    total = sum(k["bytes"] for k in index.values())
    return {
        "record_bytes": level.client.memory_usage(ops.task_keys(task_id).task(task_id), samples=0),
        "index_keys": index,
        "pending": pending,
        "index_bytes_per_pending_task": total / pending if pending else None,
    }


def _text(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _enqueue_step(level: Level, n: int, sizes: Sizes) -> None:
    level.last_id = enqueue_one_by_one(level, n)


#: What each measured step does on one level, to `n` tasks.
STEP_WORK: dict[str, Callable[[Level, int, Sizes], None]] = {
    "enqueue": _enqueue_step,
    "claim_ack_1": lambda level, n, sizes: claim_and_ack(level, n, 1),
    "claim_ack_batch": lambda level, n, sizes: claim_and_ack(level, n, sizes.batch),
}


def _slices(n: int, count: int) -> list[int]:
    """`n` tasks in `count` near-equal slices."""
    return [n // count + (1 if i < n % count else 0) for i in range(count)]


def measure_step(
    levels: list[Level], work: Callable[[Level, int, Sizes], None], sizes: Sizes
) -> dict[str, dict[str, float]]:
    """One step in slices, every slice on every level in turn, so the levels' figures come
    from the same fractions of a second; per-task figures by level."""
    tallies = {level.key: costs.Step() for level in levels}
    for i, n in enumerate(_slices(sizes.tasks, min(sizes.slices, sizes.tasks))):
        shift = i % len(levels)  # who goes first rotates
        for level in levels[shift:] + levels[:shift]:
            tallies[level.key].run(level.client, n, functools.partial(work, level, n, sizes))
    return {key: tally.figures() for key, tally in tallies.items()}


def one_repeat(levels: list[Level], sizes: Sizes, first: bool) -> dict[str, dict[str, Any]]:
    """Every step on every level; figures by level and step. The first repeat also reads
    the memory of the keys, once the measured tasks are pending."""
    measured: dict[str, dict[str, Any]] = {level.key: {} for level in levels}
    for step, work in STEP_WORK.items():
        if step == "claim_ack_batch":  # as many pending again, enqueued in bulk: not measured
            for level in levels:
                level.app.enqueue_many(level.app.message(TASK, payload=payload(i), queue=QUEUE)
                                       for i in range(sizes.tasks))  # fmt: skip
        for key, figures in measure_step(levels, work, sizes).items():
            measured[key][step] = figures
        if step == "enqueue" and first:
            for level in levels:
                measured[level.key]["memory"] = key_memory(level, level.last_id)
    for level in levels:
        stats = level.app.inspector.queue(QUEUE)
        expected = sizes.depth if level.backlog_queue == QUEUE else 0
        if stats is None or stats.pending != expected:
            raise RuntimeError(f"{level.key}: {stats} pending after a repeat, not {expected}")
    return measured


def _levels(stack: ExitStack, binary: str) -> Iterator[Level]:
    for key, queue, priority, title in LEVELS:
        server = stack.enter_context(RedisServer(binary))
        app = Conveyor(redis_url=server.url, lease_timeout=3600, log_level="WARNING")
        stack.callback(app.close)
        client = redis.Redis.from_url(server.url)
        stack.callback(client.close)
        yield Level(key, queue, priority, title, app, client)


def _prepare(levels: list[Level], sizes: Sizes, results: dict[str, Any]) -> None:
    """Fill the deep levels; load the scripts and register the queue on every level."""
    for level in levels:
        entry: dict[str, Any] = {"title": level.title, "fill": None,
                                 "steps": {s: [] for s in STEP_WORK}}  # fmt: skip
        results["levels"][level.key] = entry
        if level.backlog_queue is not None:
            _log(f"filling {level.key} with {sizes.depth:,} tasks")
            entry["fill"] = fill(level, sizes)
            _log(f"  {entry['fill']['rate']:,.0f} tasks/s")
    for level in levels:
        enqueue_one_by_one(level, 1)
        claim_and_ack(level, 1, 1)
    time.sleep(1)  # let the servers' incremental rehashing settle


def run(sizes: Sizes, binary: str) -> dict[str, Any]:
    """Fill the deep levels, then the interleaved repeats; the results document."""
    results: dict[str, Any] = {"sizes": asdict(sizes), "levels": {}}
    with ExitStack() as stack:
        levels = list(_levels(stack, binary))
        results["redis"] = levels[0].client.info("server")["redis_version"]
        _prepare(levels, sizes, results)
        for repeat in range(sizes.repeats):
            shift = repeat % len(levels)  # who goes first rotates
            measured = one_repeat(levels[shift:] + levels[:shift], sizes, first=repeat == 0)
            for key, by_step in measured.items():
                entry = results["levels"][key]
                if "memory" in by_step:
                    entry["memory"] = by_step.pop("memory")
                for step, figures in by_step.items():
                    entry["steps"][step].append(figures)
                brief = ", ".join(f"{s} {f['cpu_us_per_task']:.1f}" for s, f in by_step.items())
                _log(f"[{repeat + 1}/{sizes.repeats}] {key:11} Redis µs/task: {brief}")
    for entry in results["levels"].values():
        entry["summary"] = {s: costs.summarize(runs) for s, runs in entry["steps"].items()}
    _pair(results)
    return results


def _pair(results: dict[str, Any]) -> None:
    """Each level's ratios to the empty one (and the deep levels' to the control), repeat
    by repeat: the figures of one repeat were measured within seconds of each other."""
    levels = results["levels"]

    def ratios(runs: list[dict[str, float]], base: list[dict[str, float]]) -> dict[str, Any]:
        return {
            figure: costs.spread([r[figure] / b[figure] for r, b in zip(runs, base, strict=True)])
            for figure in ("cpu_us_per_task", "rate")
        }

    for key, entry in levels.items():
        for base in ("empty", "keyspace_only"):
            if key != base and (base == "empty" or key.startswith("deep")):
                entry[f"ratio_to_{base}"] = {
                    step: ratios(runs, levels[base]["steps"][step])
                    for step, runs in entry["steps"].items()
                }


def step_table(results: dict[str, Any]) -> list[str]:
    """Rows: step and level; per task figures, and the ratios, paired by repeat."""
    titles = {"enqueue": "enqueue, one at a time", "claim_ack_1": "claim+ack, 1 per call",
              "claim_ack_batch": f"claim+ack, {results['sizes']['batch']} per call"}  # fmt: skip
    lines = [
        "| step | level | Redis CPU µs/task | commands/task | tasks/s (client) "
        "| CPU /empty | rate /empty | CPU within 10 % | CPU /control |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for step in STEP_WORK:
        for key, entry in results["levels"].items():
            s = entry["summary"][step]
            ratios = ["-", "-", "-", "-"]
            if key != "empty":
                cpu, rate = (entry["ratio_to_empty"][step][f] for f in ("cpu_us_per_task", "rate"))
                within = "yes" if cpu["median"] <= 1 + TARGET else "**no**"
                ratios[:3] = [costs.cell(cpu, 3), costs.cell(rate, 3), within]
            if "ratio_to_keyspace_only" in entry:
                ratios[3] = costs.cell(entry["ratio_to_keyspace_only"][step]["cpu_us_per_task"], 3)
            lines.append(
                f"| {titles[step]} | {entry['title']} | {costs.cell(s['cpu_us_per_task'])} "
                f"| {costs.cell(s['commands_per_task'])} | {costs.cell(s['rate'], 0)} "
                f"| {' | '.join(ratios)} |"
            )
    return lines


def memory_table(results: dict[str, Any]) -> list[str]:
    """Bytes per pending task, by where they were measured."""
    lines = ["| level | measured how | bytes per pending task |", "|---|---|---|"]
    for entry in results["levels"].values():
        title, fill, memory = entry["title"], entry["fill"], entry["memory"]
        if fill:
            lines += [
                f"| {title} | used_memory, first chunk of the fill | "
                f"{fill['first_chunk_bytes_per_task']:,.0f} |",
                f"| {title} | used_memory, last chunk of the fill | "
                f"{fill['last_chunk_bytes_per_task']:,.0f} |",
                f"| {title} | used_memory, whole fill | {fill['whole_fill_bytes_per_task']:,.0f} |",
            ]
        enqueue = entry["summary"]["enqueue"]["memory_bytes_per_task"]
        index = memory["index_bytes_per_pending_task"]
        encodings = ", ".join(f"{k} {v['type']}/{v['encoding']}"
                              for k, v in memory["index_keys"].items())  # fmt: skip
        lines += [
            f"| {title} | used_memory, measured enqueues | {costs.cell(enqueue, 0)} |",
            f"| {title} | MEMORY USAGE of one record | {memory['record_bytes']:,} |",
            f"| {title} | MEMORY USAGE of the index ({encodings}) / {memory['pending']:,} "
            f"pending | {index:,.1f} |",
        ]
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The report: per-task costs, then memory."""
    s = results["sizes"]
    head = (f"Depth {s['depth']:,}; {s['tasks']:,} measured tasks per step, in {s['slices']} "
            f"slices the levels take turns at; medians of {s['repeats']} repeats (min-max), "
            f"ratios paired by repeat; Redis {results['redis']}.")  # fmt: skip
    return "\n".join([head, "", *step_table(results), "", *memory_table(results)]) + "\n"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--depth", type=click.IntRange(min=1), help="Backlog of the deep levels.")
@click.option("--tasks", type=click.IntRange(min=1), help="Tasks each step measures.")
@click.option("--slices", type=click.IntRange(min=1), help="Slices per step (default 10).")
@click.option("--batch", type=click.IntRange(1, 1000), help="Tasks per claim, batched step.")
@click.option("--repeats", type=click.IntRange(min=1), help="Interleaved repeats.")
@costs.output_options
def main(
    depth: int | None,
    tasks: int | None,
    slices: int | None,
    batch: int | None,
    repeats: int | None,
    smoke: bool,
    json_path: Path | None,
    markdown_path: Path | None,
    binary: str,
) -> None:
    """Redis CPU, commands and memory per task on an empty queue and on a deep one."""
    sizes = SMOKE if smoke else Sizes()
    chosen = {"depth": depth, "tasks": tasks, "slices": slices, "batch": batch, "repeats": repeats}
    sizes = replace(sizes, **{k: v for k, v in chosen.items() if v is not None})
    sizes = replace(sizes, fill_chunk=min(sizes.fill_chunk, sizes.depth))
    results = run(sizes, binary)
    costs.publish(results, "benchmarks.depth", markdown(results), json_path, markdown_path)


if __name__ == "__main__":
    main()
