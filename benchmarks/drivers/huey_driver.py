"""Huey under the benchmark protocol (see _common.py); runs in .bench/venvs/huey.

Configuration: RedisHuey with results=False (nothing stored per task), blocking=True
(Huey's Redis default: idle workers wait in BRPOP, read_timeout 1 s, so the consumer's
-d/-m polling intervals never apply and a task starts as soon as it is pushed), not
immediate mode. The consumer runs with -q (WARNING logging: by default it logs two INFO
lines per task). One process is `huey_consumer huey_driver.huey -k thread -w 4`: on 2
cores 4, 8, 16 and 32 threads were within noise of each other, 4 marginally ahead. Two processes
is `-k process -w 2`: Huey's process workers run one task at a time, so that is all two
processes can do. Either way the consumer also runs its scheduler (a thread, or a third
process with -k process). Acknowledgement is Huey's only one: BRPOP removes the message,
so a task is lost if its worker dies mid-task (at-most-once). Huey has no bulk enqueue:
`task.map(payloads)` is its idiomatic way to send many calls, and it enqueues them one by
one (one LPUSH each).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from _common import COUNTER_KEY, Driver, counter_client, main, record_latency
from huey import RedisHuey

THREADS = 4

huey = RedisHuey(
    "bench",
    url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379"),
    results=False,
    blocking=True,
)

_client = counter_client  # the handlers' client, shared with every driver


@huey.task(name="noop")
def noop(task_payload: dict[str, Any]) -> None:
    _client().incr(COUNTER_KEY)


@huey.task(name="latency")
def latency(task_payload: dict[str, Any]) -> None:
    record_latency(_client(), task_payload)
    _client().incr(COUNTER_KEY)


class Producer:
    """Calls the tasks of the module the workers import (Huey names tasks module.name)."""

    def __init__(self, url: str) -> None:
        os.environ["BENCH_REDIS_URL"] = url  # read by the module's RedisHuey on import
        import huey_driver as tasks  # this file as a module, not as __main__

        self.huey = tasks.huey
        self.tasks = {"noop": tasks.noop, "latency": tasks.latency}

    def one(self, task: str, task_payload: dict[str, Any]) -> None:
        self.tasks[task](task_payload)

    def bulk(self, task: str, payloads: Sequence[dict[str, Any]]) -> None:
        self.tasks[task].map(payloads)

    def close(self) -> None:
        self.huey.storage.pool.disconnect()


def describe() -> dict[str, Any]:
    common = "RedisHuey(results=False, blocking=True), at-most-once (BRPOP, no ack)"
    return {
        "name": "Huey",
        "version": version("huey"),
        "one_process": f"huey_consumer -q -k thread -w {THREADS}: 1 process, {THREADS} threads, "
        + common,
        "two_processes": "huey_consumer -q -k process -w 2: 2 worker processes, 1 task at a time "
        "each, " + common,
        "bulk_api": "task.map(payloads): enqueues one by one (no bulk enqueue)",
        "async_api": None,
    }


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    if processes == 1:
        workers = ["-k", "thread", "-w", str(THREADS)]
    else:
        workers = ["-k", "process", "-w", str(processes)]
    argv = [sys.executable, "-m", "huey.bin.huey_consumer", "huey_driver.huey", "-q", *workers]
    return argv, {}


if __name__ == "__main__":
    main(Driver(describe, Producer, worker_command))
