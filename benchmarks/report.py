"""The results document as markdown: medians (min-max) side by side, and the targets."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from benchmarks.systems import PEERS

Runs = list[dict[str, Any]]

COLUMNS = [
    ("enqueue", "enqueue, one at a time (sync)"),
    ("enqueue_async", "enqueue, concurrent (async)"),
    ("bulk", "bulk enqueue"),
    ("e2e_1", "end to end, 1 process"),
    ("e2e_2", "end to end, 2 processes"),
]


def rates(runs: Runs) -> list[float]:
    return [r["rate"] for r in runs if "rate" in r]


def median_rate(runs: Runs | None) -> float | None:
    values = rates(runs or [])
    return statistics.median(values) if values else None


def cell(runs: Runs | None) -> str:
    if not runs:
        return "-"
    if any("skipped" in r for r in runs):
        return "n/a"
    values = rates(runs)
    if not values:
        return "failed"
    failed = f", {len(runs) - len(values)} failed" if len(values) < len(runs) else ""
    if len(values) == 1:
        return f"{values[0]:,.0f}{failed}"
    return f"**{statistics.median(values):,.0f}** ({min(values):,.0f}-{max(values):,.0f}){failed}"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Latency(NamedTuple):
    """Medians over runs of p50 and p99 (ms), and the idle CPU % of the run that measured it."""

    p50: float
    p99: float
    idle_cpu: float | None


def latency_of(runs: Runs | None) -> Latency | None:
    """The latency figures of a system's runs, or None if every run failed."""
    good = [r for r in runs or [] if "latencies_ms" in r]
    if not good:
        return None
    p50 = statistics.median(percentile(r["latencies_ms"], 50) for r in good)
    p99 = statistics.median(percentile(r["latencies_ms"], 99) for r in good)
    idle = next((r["idle_cpu_percent"] for r in good if r["idle_cpu_percent"] is not None), None)
    return Latency(p50, p99, idle)


#: Conveyor's columns: async handlers, and sync ones (end to end only)
CONVEYORS = ("conveyor", "conveyor_sync")


def _order(results: dict[str, Any], measured: str | None = None) -> list[str]:
    """The systems in column order; with `measured`, those that have that section."""
    keys = list(results["systems"])
    if measured is not None:
        section = results.get(measured, {})
        keys = [k for k in keys if k in section or k not in CONVEYORS[1:]]
    return [k for k in (*CONVEYORS, *PEERS) if k in keys]


def throughput_table(results: dict[str, Any], runs_key: str = "runs") -> list[str]:
    runs = results.get(runs_key, {})
    shown = [(k, title) for k, title in COLUMNS if any(k in runs.get(s, {}) for s in runs)]
    lines = [
        "| system | " + " | ".join(f"{title} (tasks/s)" for _, title in shown) + " |",
        "|---" * (len(shown) + 1) + "|",
    ]
    for key in _order(results):
        name = results["systems"][key]["name"]
        row = [cell(runs.get(key, {}).get(k)) for k, _ in shown]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return lines


def latency_table(results: dict[str, Any]) -> list[str]:
    lines = ["| system | p50 (ms) | p99 (ms) | idle CPU (% of a core) |", "|---|---|---|---|"]
    for key in _order(results, "latency"):
        measured = latency_of(results.get("latency", {}).get(key))
        name = results["systems"][key]["name"]
        if measured is None:
            lines.append(f"| {name} | failed | failed | - |")
            continue
        p50, p99, idle = measured
        idle_text = "-" if idle is None else f"{idle:.2f}"
        lines.append(f"| {name} | {p50:.2f} | {p99:.2f} | {idle_text} |")
    return lines


def cost_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| system | round trips / task | commands / task | Redis CPU µs / task "
        "| bytes / pending task | bytes / finished task (kept) |",
        "|---|---|---|---|---|---|",
    ]
    for key in _order(results, "cost"):
        run = results.get("cost", {}).get(key, {})
        name = results["systems"][key]["name"]
        if "n" not in run:
            lines.append(f"| {name} | failed | | | | |")
            continue
        n, enq, proc = run["n"], run["enqueue_cost"], run["process_cost"]
        total = {k: enq.get(k, 0) + proc.get(k, 0) for k in ("commands", "cpu_us", "used_memory")}
        cells = [
            f"{round_trips(run):.2f}",
            f"{total['commands'] / n:.1f}",
            f"{total['cpu_us'] / n:.1f}",
            f"{enq.get('used_memory', 0) / n:,.0f}",
            f"{total['used_memory'] / n:,.0f}",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


@dataclass(frozen=True)
class Target:
    """One target of the issue: a ratio measured in this run, and its bar."""

    name: str
    ratio: float | None
    bar: float
    detail: str
    higher_is_better: bool = True

    @property
    def met(self) -> bool | None:
        if self.ratio is None:
            return None
        return self.ratio >= self.bar if self.higher_is_better else self.ratio <= self.bar


class Judge:
    """Reads the targets of the issue off one results document."""

    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results
        self.names = {k: v["name"] for k, v in results["systems"].items()}
        self.peers = [k for k in _order(results) if k not in CONVEYORS]

    def rate(self, system: str, key: str) -> float | None:
        return median_rate(self.results.get("runs", {}).get(system, {}).get(key))

    def best(self, system: str) -> float | None:
        values = [v for v in (self.rate(system, "e2e_1"), self.rate(system, "e2e_2")) if v]
        return max(values) if values else None

    def latency(self, system: str) -> Latency | None:
        return latency_of(self.results.get("latency", {}).get(system))

    def versus_peers(
        self, name: str, score: Callable[[str], float | None], bar: float, mine_of: str = "conveyor"
    ) -> Target:
        """The score of Conveyor (`mine_of`: one of its columns) against the highest peer's."""
        scored = [(k, v) for k in self.peers if (v := score(k)) is not None]
        mine = score(mine_of)
        if not scored or not mine:
            return Target(name, None, bar, "not measured")
        peer, theirs = max(scored, key=lambda kv: kv[1])
        detail = f"{mine:,.0f} vs {self.names[peer]} {theirs:,.0f}"
        return Target(name, mine / theirs, bar, detail)

    def versus_ceiling(self, name: str, key: str, ceiling: str, bar: float) -> Target:
        mine, theirs = self.rate("conveyor", key), self.results["ceilings"].get(ceiling)
        if not mine or not theirs:
            return Target(name, None, bar, "not measured")
        return Target(name, mine / theirs, bar, f"{mine:,.0f} vs {theirs:,.0f}")

    def latency_targets(self) -> list[Target]:
        mine = self.latency("conveyor")
        theirs = {k: v for k in self.peers if (v := self.latency(k)) is not None}
        if mine is None or not theirs:
            return []
        found = []
        for label in ("p50", "p99"):
            peer = min(theirs, key=lambda k: float(getattr(theirs[k], label)))
            ours, best = float(getattr(mine, label)), float(getattr(theirs[peer], label))
            detail = f"{ours:.2f} ms vs {self.names[peer]} {best:.2f} ms"
            name = f"idle latency {label} vs the best peer's"
            found.append(Target(name, ours / best, 1.0, detail, higher_is_better=False))
        return found

    def own_targets(self) -> list[Target]:
        """Targets that need no peer: idle CPU, HTTP ratio, round trips."""
        found = []
        latency = self.latency("conveyor")
        if latency and latency.idle_cpu is not None:
            cpu = latency.idle_cpu
            found.append(Target("idle worker CPU, % of a core", cpu, 1.0, f"{cpu:.2f} %", False))
        web = self.results.get("http")
        if web:
            detail = f"{web['post_task']:,.0f} vs {web['bare_post_task']:,.0f} requests/s"
            found.append(Target("POST /task vs the bare endpoint", web["post_task_vs_bare"],
                                0.6, detail))  # fmt: skip
        cost = self.results.get("cost", {}).get("conveyor", {})
        trips = round_trips(cost)
        if trips is not None:
            name = "Redis round trips per task (enqueued one at a time, then processed)"
            found.append(Target(name, trips, 3.0, f"{trips:.2f}", higher_is_better=False))
        if "n" in cost:
            n, enqueue, process = cost["n"], cost["enqueue_cost"], cost["process_cost"]
            cpu = (enqueue.get("cpu_us", 0) + process.get("cpu_us", 0)) / n
            floor = self.results.get("ceilings", {}).get("redis_cpu_us_per_round_trip")
            detail = f"{cpu:.1f} µs" + (f"; one PING alone costs {floor:.1f}" if floor else "")
            name = "Redis CPU µs per task (enqueued one at a time, then processed)"
            found.append(Target(name, cpu, 30.0, detail, higher_is_better=False))
            pending = enqueue.get("used_memory", 0) / n
            name = "bytes of Redis memory per pending task"
            found.append(Target(name, pending, 250.0, f"{pending:,.0f}", higher_is_better=False))
        return found

    def targets(self) -> list[Target]:
        found = []
        if self.peers:
            found += [
                self.versus_peers("end to end, 1 process vs the fastest peer's 1 process",
                                  lambda k: self.rate(k, "e2e_1"), 3.0),
                self.versus_peers("sync handlers end to end, 1 process vs the fastest peer's "
                                  "1 process", lambda k: self.rate(k, "e2e_1"), 3.0,
                                  "conveyor_sync"),
                self.versus_peers("end to end, best configuration vs the fastest peer's best",
                                  self.best, 3.0),
                self.versus_peers("sync enqueue vs the fastest peer's",
                                  lambda k: self.rate(k, "enqueue"), 1.0),
                self.versus_peers("concurrent async enqueue vs the fastest peer's",
                                  lambda k: self.rate(k, "enqueue_async"), 3.0),
                *self.latency_targets(),
            ]  # fmt: skip
        return [
            *found,
            self.versus_ceiling("sync enqueue vs a bare redis-py sequential LPUSH loop",
                                "enqueue", "redis_py_sequential_lpush", 0.75),
            self.versus_ceiling("bulk enqueue vs a bare redis-py pipelined LPUSH loop",
                                "bulk", "redis_py_pipelined_lpush", 1 / 3),
            *self.own_targets(),
        ]  # fmt: skip


def round_trips(run: dict[str, Any]) -> float | None:
    """Read events Redis processed per task (each is one request, or one pipeline)."""
    if "n" not in run:
        return None
    reads = int(run["enqueue_cost"].get("reads", 0)) + int(run["process_cost"].get("reads", 0))
    return reads / int(run["n"])


def target_table(results: dict[str, Any]) -> list[str]:
    lines = ["| target | measured | bar | met |", "|---|---|---|---|"]
    for t in Judge(results).targets():
        sign = "≥" if t.higher_is_better else "≤"
        verdict = {True: "yes", False: "**no**", None: "not measured"}[t.met]
        shown = "-" if t.ratio is None else f"{t.ratio:.2f}"
        lines.append(f"| {t.name} ({t.detail}) | {shown} | {sign} {t.bar:.2f} | {verdict} |")
    return lines


def ceiling_table(results: dict[str, Any]) -> list[str]:
    c = results["ceilings"]
    lines = ["| measure | per second |", "|---|---|"]
    for name, value in c["redis_benchmark"].items():
        lines.append(f"| redis-benchmark {name}, 50 clients | {value:,.0f} |")
    lines.append(f"| redis-py sequential LPUSH loop | {c['redis_py_sequential_lpush']:,.0f} |")
    pipelined = c["redis_py_pipelined_lpush"]
    lines.append(f"| redis-py pipelined LPUSH, 1,000 per pipeline | {pipelined:,.0f} |")
    floor = c.get("redis_cpu_us_per_round_trip")
    if floor is not None:
        lines.append(f"| Redis CPU µs per PING sent alone (not a rate) | {floor:.1f} |")
    return lines


def http_table(web: dict[str, Any]) -> list[str]:
    batch = f"`POST /v1/tasks/batch` ({web['batch_size']} tasks a request, 8 connections)"
    return [
        "| endpoint | requests/s | tasks/s |",
        "|---|---|---|",
        f"| bare FastAPI endpoint, constant JSON | {web['bare_post_task']:,.0f} | - |",
        f"| `POST /task` | {web['post_task']:,.0f} | {web['post_task']:,.0f} |",
        f"| {batch} | {web['batch_requests']:,.0f} | {web['batch_tasks']:,.0f} |",
    ]


def configuration_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| system | version | 1 process | 2 processes | bulk API | async API |",
        "|---|---|---|---|---|---|",
    ]
    for key in _order(results):
        d = results["systems"][key]
        cells = [d["name"], d["version"], d["one_process"], d["two_processes"], d["bulk_api"]]
        lines.append("| " + " | ".join(cells) + f" | {d.get('async_api') or '-'} |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The whole report."""
    m, sizes = results["machine"], results["sizes"]
    out = [
        f"Measured {m['date']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}, "
        f"Redis {m['redis']}, {m['platform']}.",
        f"Command: `{results['command']}`. Each cell: the median of {sizes['repeats']} runs "
        "(min-max).",
        "",
        "### Targets",
        *target_table(results),
        "",
        "### Throughput, Redis without persistence",
        *throughput_table(results),
    ]
    conveyor = results.get("runs", {}).get("conveyor", {})
    if conveyor.get("e2e_1_large"):
        one, two = cell(conveyor.get("e2e_1_large")), cell(conveyor.get("e2e_2_large"))
        out += ["", f"Conveyor end to end with {sizes['e2e_large']:,} tasks: "
                f"1 process {one}, 2 processes {two} tasks/s."]  # fmt: skip
    if "runs_aof" in results:
        out += [
            "",
            "### Throughput, Redis with appendonly yes (appendfsync everysec), one run each",
        ]
        out += throughput_table(results, "runs_aof")
    out += ["", "### Idle latency, enqueue to handler start", *latency_table(results)]
    out += ["", "### Cost per task in Redis", *cost_table(results)]
    if "ceilings" in results:
        out += ["", "### Ceilings", *ceiling_table(results)]
    if "http" in results:
        out += ["", "### HTTP (wrk: one thread, 64 connections)", *http_table(results["http"])]
    out += ["", "### Configurations", *configuration_table(results)]
    return "\n".join(out) + "\n"
