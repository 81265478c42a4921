"""The benchmark matrix: every scenario for every system, repeated, on private Redis servers.

Runs are interleaved (each repeat goes through every system before the next repeat), so
the noise of a shared machine spreads over all systems alike. Redis is flushed before
every run, and every run is a fresh driver process.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from benchmarks import ceilings, http
from benchmarks.systems import System
from conveyor.tools.embedded import RedisServer, find_redis_server


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does (the defaults are the issue's figures)."""

    enqueue: int = 20_000
    concurrency: int = 64
    bulk: int = 100_000
    e2e: int = 20_000
    #: Conveyor alone also runs the end-to-end scenario with this many tasks (0: skip)
    e2e_large: int = 100_000
    latency: int = 500
    interval: float = 0.005
    idle_seconds: float = 30
    cost: int = 10_000
    http_seconds: float = 10
    sequential: int = 20_000
    pipelined: int = 100_000
    repeats: int = 3
    #: also run enqueue, bulk and e2e (1 process) once each on a Redis with appendonly yes
    aof: bool = True


#: CI's smoke run: every code path of the suite in seconds, Conveyor only.
SMOKE = Sizes(
    enqueue=300, bulk=2_000, e2e=1_000, e2e_large=0, latency=20, idle_seconds=1, cost=300,
    http_seconds=1, sequential=1_000, pipelined=5_000, repeats=1, aof=False,
)  # fmt: skip

Log = Callable[[str], None]


def _throughput_specs(sizes: Sizes, system: System) -> dict[str, dict[str, Any]]:
    specs: dict[str, dict[str, Any]] = {
        "enqueue": {"scenario": "enqueue", "n": sizes.enqueue},
        "enqueue_async": {
            "scenario": "enqueue_async", "n": sizes.enqueue, "concurrency": sizes.concurrency
        },
        "bulk": {"scenario": "bulk", "n": sizes.bulk},
        "e2e_1": {"scenario": "e2e", "n": sizes.e2e, "processes": 1},
        "e2e_2": {"scenario": "e2e", "n": sizes.e2e, "processes": 2},
    }  # fmt: skip
    if system.is_conveyor and sizes.e2e_large:
        for processes in (1, 2):
            specs[f"e2e_{processes}_large"] = {
                "scenario": "e2e", "n": sizes.e2e_large, "processes": processes
            }  # fmt: skip
    return specs


def _attempt(system: System, spec: dict[str, Any], log: Log) -> dict[str, Any]:
    """One run; a failing peer is recorded as failed, and the suite goes on."""
    try:
        return system.run(spec)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        log(f"  ! {system.key} {spec['scenario']} failed: {str(exc)[:2000]}")
        return {"error": str(exc)[-2000:]}


def _flush(server: RedisServer) -> None:
    client = redis.Redis(port=server.port)
    client.flushall()
    client.close()


def matrix(
    systems: list[System],
    sizes: Sizes,
    server: RedisServer,
    log: Log,
    names: list[str] | None = None,
    repeats: int | None = None,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The throughput scenarios (`names`, else all), interleaved: runs[system][scenario]."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {s.key: {} for s in systems}
    repeats = repeats or sizes.repeats
    for repeat in range(repeats):
        for system in systems:
            for key, spec in _throughput_specs(sizes, system).items():
                if (names is not None and key not in names) or not system.runs(key):
                    continue
                _flush(server)
                result = _attempt(system, {**spec, "redis_url": server.url}, log)
                runs[system.key].setdefault(key, []).append(result)
                log(f"  [{repeat + 1}/{repeats}] {system.key:13} {key:14} {_brief(result)}")
    return runs


def _latency(
    systems: list[System], sizes: Sizes, server: RedisServer, log: Log
) -> dict[str, list[dict[str, Any]]]:
    systems = [s for s in systems if s.runs("latency")]
    runs: dict[str, list[dict[str, Any]]] = {s.key: [] for s in systems}
    for repeat in range(sizes.repeats):
        for system in systems:
            _flush(server)
            spec = {
                "scenario": "latency", "redis_url": server.url, "n": sizes.latency,
                "interval": sizes.interval, "idle_seconds": sizes.idle_seconds if not repeat else 0,
            }  # fmt: skip
            result = _attempt(system, spec, log)
            runs[system.key].append(result)
            log(f"  [{repeat + 1}/{sizes.repeats}] {system.key:13} latency        {_brief(result)}")
    return runs


def cost(
    systems: list[System], sizes: Sizes, server: RedisServer, counter: RedisServer, log: Log
) -> dict[str, dict[str, Any]]:
    """One e2e run each, with the counter on another Redis so INFO shows only the queue."""
    results: dict[str, dict[str, Any]] = {}
    for system in (s for s in systems if s.runs("cost")):
        _flush(server)
        spec = {
            "scenario": "e2e", "redis_url": server.url, "counter_url": counter.url,
            "n": sizes.cost, "processes": 1, "enqueue": "one",
        }  # fmt: skip
        results[system.key] = _attempt(system, spec, log)
        log(f"  {system.key:13} cost           {_brief(results[system.key])}")
    return results


def _brief(result: dict[str, Any]) -> str:
    if "error" in result:
        return "FAILED"
    if "skipped" in result:
        return f"skipped: {result['skipped']}"
    if "latencies_ms" in result:
        ordered = sorted(result["latencies_ms"])
        return f"p50 {ordered[len(ordered) // 2]:.2f} ms, idle CPU {result['idle_cpu_percent']}"
    return f"{result['rate']:,.0f}/s"


def machine(binary: str) -> dict[str, Any]:
    """What the figures were measured on."""
    with RedisServer(binary) as server:
        version = server.version()
    with open("/proc/cpuinfo") as info:
        names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    return {
        "cpu": names[0] if names else platform.processor(),
        "cores": len(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "redis": version,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def default_redis_server() -> str:
    """The system's redis-server (a distribution's, usually the newest) before a bundled one."""
    return shutil.which("redis-server", path="/usr/bin:/usr/local/bin") or find_redis_server()


def run(
    systems: list[System], sizes: Sizes, log: Log, *, binary: str, with_http: bool = True
) -> dict[str, Any]:
    """Everything, in one run: the results document the report is made from."""
    server = functools.partial(RedisServer, binary)
    results: dict[str, Any] = {
        "machine": machine(binary),
        "sizes": asdict(sizes),
        "command": " ".join(["python", "-m", "benchmarks", *sys.argv[1:]]),
        "systems": {s.key: s.run({"scenario": "describe"}) for s in systems},
    }
    log("Redis without persistence")
    with server() as main:
        log("  ceilings")
        results["ceilings"] = ceilings.measure(
            main.port, main.url, sizes.sequential, sizes.pipelined
        )
        results["runs"] = matrix(systems, sizes, main, log)
        results["latency"] = _latency(systems, sizes, main, log)
        with server() as counter:
            results["cost"] = cost(systems, sizes, main, counter, log)
        if with_http and http.available():
            log("  HTTP")
            _flush(main)
            results["http"] = http.measure(main.url, sizes.http_seconds)
        elif with_http:
            log("  ! wrk not found: HTTP skipped (apt-get install wrk)")
    if sizes.aof:
        log("Redis with appendonly yes (appendfsync everysec)")
        with server(appendonly=True, extra_args=("--appendfsync", "everysec")) as aof:
            only = ["enqueue", "bulk", "e2e_1"]
            results["runs_aof"] = matrix(systems, sizes, aof, log, only, repeats=1)
    return results
