"""What Redis itself allows on this machine: redis-benchmark and bare redis-py loops.

These are the references the targets are ratios of: a synchronous enqueue cannot beat one
sequential round trip, and a bulk enqueue cannot beat a pipelined LPUSH.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import redis

from benchmarks.drivers._common import payload


def redis_benchmark(port: int, requests: int) -> dict[str, float]:
    """LPUSH and LMOVE requests/s, 50 clients, without and with pipelining (-P 16)."""
    client = redis.Redis(port=port)
    client.rpush("bench:ring", *range(1000))  # LMOVE rotates a ring: it never runs dry
    results: dict[str, float] = {}
    commands = {
        "LPUSH": ["LPUSH", "bench:list", "x"],
        "LMOVE": ["LMOVE", "bench:ring", "bench:ring", "RIGHT", "LEFT"],
    }
    for name, command in commands.items():
        for pipeline in (1, 16):
            out = subprocess.run(
                ["redis-benchmark", "-p", str(port), "-n", str(requests), "-c", "50",
                 "-P", str(pipeline), "--csv", *command],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            row = out.strip().splitlines()[-1].split(",")
            results[f"{name} -P {pipeline}"] = float(row[1].strip('"'))
    client.delete("bench:list", "bench:ring")
    client.close()
    return results


def sequential_lpush(url: str, n: int) -> float:
    """LPUSHes/s of a JSON payload, one round trip at a time (the floor of a sync call)."""
    client = redis.Redis.from_url(url)
    client.ping()
    start = time.perf_counter()
    for i in range(n):
        client.lpush("bench:seq", json.dumps(payload(i)))
    rate = n / (time.perf_counter() - start)
    client.delete("bench:seq")
    client.close()
    return rate


def round_trip_cpu(url: str, n: int) -> float:
    """Redis CPU µs per PING sent one at a time: what one round trip alone costs the
    server (reading the request, writing the reply), the floor of any command sent alone."""
    client = redis.Redis.from_url(url)
    client.ping()
    before = _cpu_us(client)
    for _ in range(n):
        client.ping()
    spent = _cpu_us(client) - before
    client.close()
    return spent / n


def _cpu_us(client: redis.Redis) -> float:
    cpu: dict[str, float] = client.info("cpu")
    return (cpu["used_cpu_user"] + cpu["used_cpu_sys"]) * 1e6


def pipelined_lpush(url: str, n: int, batch: int = 1000) -> float:
    """LPUSHes/s of a JSON payload sent in pipelines of `batch` commands."""
    client = redis.Redis.from_url(url)
    client.ping()
    start = time.perf_counter()
    for first in range(0, n, batch):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(first + batch, n)):
            pipe.lpush("bench:pipe", json.dumps(payload(i)))
        pipe.execute()
    rate = n / (time.perf_counter() - start)
    client.delete("bench:pipe")
    client.close()
    return rate


def measure(port: int, url: str, sequential_n: int, pipelined_n: int) -> dict[str, Any]:
    """Every ceiling, once."""
    return {
        "redis_benchmark": redis_benchmark(port, pipelined_n),
        "redis_py_sequential_lpush": sequential_lpush(url, sequential_n),
        "redis_py_pipelined_lpush": pipelined_lpush(url, pipelined_n),
        "redis_cpu_us_per_round_trip": round_trip_cpu(url, sequential_n),
    }
