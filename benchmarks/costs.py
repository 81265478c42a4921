"""What a measured step cost Redis, per task, and the medians of repeated steps.

Shared by the commands that measure Redis itself (`benchmarks.depth`, `benchmarks.scaling`)
rather than a client's rate alone: on a shared machine the server's own CPU time per task
is steadier than a rate, and it is what a deeper queue or more queues would make grow.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

#: Commands that only read the figures: left out of "commands per task".
_OBSERVING = ("cmd:info", "cmd:memory", "cmd:scan", "cmd:type", "cmd:object", "cmd:ping")


def snapshot(client: redis.Redis) -> dict[str, int]:
    """INFO counters: the server's CPU (µs), calls per command, used_memory."""
    cpu = client.info("cpu")
    snap = {f"cmd:{k.removeprefix('cmdstat_')}": int(v["calls"])
            for k, v in client.info("commandstats").items()}  # fmt: skip
    snap["used_memory"] = int(client.info("memory")["used_memory"])
    snap["cpu_us"] = int((cpu["used_cpu_user"] + cpu["used_cpu_sys"]) * 1e6)
    return snap


@dataclass(frozen=True, slots=True)
class Step:
    """One measured step: `n` tasks in `seconds`, and INFO before and after."""

    n: int
    seconds: float
    before: dict[str, int]
    after: dict[str, int]

    def delta(self, key: str) -> int:
        return self.after.get(key, 0) - self.before.get(key, 0)

    def figures(self) -> dict[str, float]:
        """Per task: Redis CPU (µs), commands (script calls and the commands run inside
        them, as INFO counts them), script calls (round trips of the scripts); bytes of
        used_memory; and the client's rate."""
        commands = sum(self.delta(k) for k in self.after if k.startswith("cmd:")
                       and k not in _OBSERVING)  # fmt: skip
        return {
            "cpu_us_per_task": self.delta("cpu_us") / self.n,
            "commands_per_task": commands / self.n,
            "script_calls_per_task": (self.delta("cmd:evalsha") + self.delta("cmd:eval")) / self.n,
            "memory_bytes_per_task": self.delta("used_memory") / self.n,
            "rate": self.n / self.seconds,
        }


def measure(client: redis.Redis, n: int, work: Callable[[], object]) -> dict[str, float]:
    """Run `work` (which handles `n` tasks) between two snapshots; its per-task figures."""
    before = snapshot(client)
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    return Step(n, seconds, before, snapshot(client)).figures()


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
