"""What a measured step cost Redis, per task, and the medians of repeated steps.

Shared by the commands that measure Redis itself (`benchmarks.depth`, `benchmarks.scaling`)
rather than a client's rate alone: on a shared machine the server's own CPU time per task
is steadier than a rate, and it is what a deeper queue or more queues would make grow.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import redis

from benchmarks.suite import default_redis_server

#: Commands that only read the figures: left out of "commands per task".
_OBSERVING = ("cmd:info", "cmd:memory", "cmd:scan", "cmd:type", "cmd:object", "cmd:ping")


def output_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options such a command shares: `--smoke`, where it writes (`json_path`,
    `markdown_path`), and the redis-server it runs (`binary`)."""
    options = [
        click.option("--smoke", is_flag=True, help="Tiny sizes (CI)."),
        click.option("--json", "json_path", type=click.Path(path_type=Path),
                     help="Write the figures."),
        click.option("--markdown", "markdown_path", type=click.Path(path_type=Path),
                     help="Write the table (it is printed too)."),
        click.option("--redis-server", "binary", default=default_redis_server,
                     show_default=True),
    ]  # fmt: skip
    for option in reversed(options):  # the first listed is the outermost, shown first
        command = option(command)
    return command


def publish(
    results: dict[str, Any],
    module: str,
    text: str,
    json_path: Path | None,
    markdown_path: Path | None,
) -> None:
    """Record the command that made `results`, write them (JSON) and their table (`text`,
    markdown) where asked, and print the table."""
    results["command"] = " ".join(["python", "-m", module, *sys.argv[1:]])
    if json_path:
        json_path.write_text(json.dumps(results, indent=1) + "\n")
    if markdown_path:
        markdown_path.write_text(text)
    click.echo(text)


def snapshot(client: redis.Redis) -> dict[str, int]:
    """INFO counters: the server's CPU (µs), calls per command, used_memory."""
    cpu = client.info("cpu")
    snap = {f"cmd:{k.removeprefix('cmdstat_')}": int(v["calls"])
            for k, v in client.info("commandstats").items()}  # fmt: skip
    snap["used_memory"] = int(client.info("memory")["used_memory"])
    snap["cpu_us"] = int((cpu["used_cpu_user"] + cpu["used_cpu_sys"]) * 1e6)
    return snap


@dataclass(slots=True)
class Step:
    """A measured step, whole or in slices: its tasks, seconds and INFO deltas, summed."""

    n: int = 0
    seconds: float = 0.0
    deltas: dict[str, int] = field(default_factory=dict)

    def add(self, n: int, seconds: float, before: dict[str, int], after: dict[str, int]) -> None:
        """Count `n` more tasks, done in `seconds` between the snapshots `before` and `after`."""
        self.n += n
        self.seconds += seconds
        for key, value in after.items():
            self.deltas[key] = self.deltas.get(key, 0) + value - before.get(key, 0)

    def run(self, client: redis.Redis, n: int, work: Callable[[], object]) -> None:
        """Run `work` (which handles `n` tasks) between two snapshots, and count it."""
        before = snapshot(client)
        started = time.perf_counter()
        work()
        seconds = time.perf_counter() - started
        self.add(n, seconds, before, snapshot(client))

    def figures(self) -> dict[str, float]:
        """Per task: Redis CPU (µs), commands (script calls and the commands run inside
        them, as INFO counts them), script calls (round trips of the scripts); bytes of
        used_memory; and the client's rate."""
        d = self.deltas
        return {
            "cpu_us_per_task": d.get("cpu_us", 0) / self.n,
            "commands_per_task": commands(d) / self.n,
            "script_calls_per_task": (d.get("cmd:evalsha", 0) + d.get("cmd:eval", 0)) / self.n,
            "memory_bytes_per_task": d.get("used_memory", 0) / self.n,
            "rate": self.n / self.seconds,
        }


def commands(deltas: dict[str, int]) -> int:
    """Commands run (script calls and the commands inside them), less those that only
    read the figures."""
    return sum(v for k, v in deltas.items() if k.startswith("cmd:") and k not in _OBSERVING)


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of repeated measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Each figure of repeated steps as its spread."""
    return {key: spread([s[key] for s in samples]) for key in samples[0]}


def cell(figure: dict[str, Any], digits: int = 1) -> str:
    """`median (min-max)` for a markdown table."""
    f = f"{{:,.{digits}f}}"
    return f"{f.format(figure['median'])} ({f.format(figure['min'])}-{f.format(figure['max'])})"
