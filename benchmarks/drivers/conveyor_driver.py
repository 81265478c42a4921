"""Conveyor under the benchmark protocol (see _common.py); runs in the project's own env.

Configuration: one worker process runs async handlers at concurrency 200; "two processes"
is `conveyor worker --workers 2`. Metrics exporters are off, as they are for every peer.

With BENCH_HANDLERS=sync (the suite's "conveyor_sync" column) the handlers are plain `def`
functions on the worker's threads, counting with the sync `counter_client()` every peer's
sync handlers use, at SYNC_CONCURRENCY on SYNC_THREADS (see there for how they were chosen).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import redis.asyncio
from _common import (
    COUNTER_KEY,
    Driver,
    async_counter_client,
    chunks,
    counter_client,
    main,
    record_latency,
    record_latency_async,
    redis_url,
)

from conveyor import Conveyor

app = Conveyor()
#: "async" (coroutine handlers) or "sync" (plain functions, run on the worker's threads)
HANDLERS = os.environ.get("BENCH_HANDLERS", "async")
SYNC = HANDLERS == "sync"
#: Sync handlers: concurrency 200, as the async column (claims and acks in batches that
#: large), on 16 threads. On 2 cores 8, 16, 32 and 64 threads were within noise of each
#: other (the fastest changed from run to run), and one thread per task (200) reached
#: about half their rate: those threads spend their time contending for the GIL.
SYNC_CONCURRENCY, SYNC_THREADS = 200, 16
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", SYNC_CONCURRENCY if SYNC else 200))
THREADS = int(os.environ.get("BENCH_THREADS", SYNC_THREADS))
if HANDLERS not in ("async", "sync"):
    raise SystemExit(f"BENCH_HANDLERS must be async or sync, not {HANDLERS!r}")


def _client() -> redis.asyncio.Redis:
    """The handlers' client: a pool as large as the concurrency, so no handler waits."""
    return async_counter_client(CONCURRENCY)  # type: ignore[no-any-return]


async def noop(task_payload: dict[str, Any]) -> None:
    await _client().incr(COUNTER_KEY)


async def latency(task_payload: dict[str, Any]) -> None:
    await record_latency_async(_client(), task_payload)
    await _client().incr(COUNTER_KEY)


def sync_noop(task_payload: dict[str, Any]) -> None:
    counter_client().incr(COUNTER_KEY)


def sync_latency(task_payload: dict[str, Any]) -> None:
    record_latency(counter_client(), task_payload)
    counter_client().incr(COUNTER_KEY)


app.task(name="noop")(sync_noop if SYNC else noop)
app.task(name="latency")(sync_latency if SYNC else latency)


class Producer:
    def __init__(self, url: str) -> None:
        os.environ["CONVEYOR_REDIS_URL"] = url
        self.app = Conveyor()

    def one(self, task: str, task_payload: dict[str, Any]) -> None:
        self.app.enqueue(task, payload=task_payload)

    def bulk(self, task: str, payloads: Sequence[dict[str, Any]]) -> None:
        for chunk in chunks(payloads, 10_000):
            self.app.enqueue_many(self.app.message(task, payload=p) for p in chunk)

    def close(self) -> None:
        self.app.close()


class AsyncProducer:
    def __init__(self, url: str) -> None:
        os.environ["CONVEYOR_REDIS_URL"] = url
        self.app = Conveyor()

    async def one(self, task: str, task_payload: dict[str, Any]) -> None:
        await self.app.enqueue_async(task, payload=task_payload)

    async def close(self) -> None:
        await self.app.aclose()


async def async_producer(url: str) -> AsyncProducer:
    return AsyncProducer(url)


def describe() -> dict[str, Any]:
    handlers = f"sync handlers on {THREADS} threads" if SYNC else "async handlers"
    return {
        "name": "Conveyor (sync handlers)" if SYNC else "Conveyor",
        "version": version("conveyor-queue"),
        "one_process": f"1 worker process, {handlers}, concurrency {CONCURRENCY}",
        "two_processes": f"conveyor worker --workers 2, concurrency {CONCURRENCY} each"
        + (f", {THREADS} threads each" if SYNC else ""),
        "bulk_api": "Conveyor.enqueue_many, 10,000 messages per call",
        "async_api": "Conveyor.enqueue_async",
    }


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, "-m", "conveyor", "worker", "conveyor_driver:app",
            "--concurrency", str(CONCURRENCY), "--workers", str(processes),
            "--metrics-port", "0"]  # fmt: skip
    env = {"CONVEYOR_REDIS_URL": redis_url(), "CONVEYOR_LOG_LEVEL": "WARNING"}
    if SYNC:  # a variable, not --threads: a version without threads (the A/B) ignores it
        env["CONVEYOR_THREADS"] = str(THREADS)
    return argv, env


if __name__ == "__main__":
    main(Driver(describe, Producer, worker_command, async_producer=async_producer))
