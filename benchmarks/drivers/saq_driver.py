"""SAQ under the benchmark protocol (see _common.py); runs in the SAQ virtualenv.

Configuration: `saq saq_driver.settings --workers P` (SAQ's own multi-process option: the
command's process plus P-1 forked ones, each a full worker), the Redis queue, concurrency
10 per process (SAQ's default: 50 measured the same within noise, 200 a little slower),
and jobs enqueued with ttl=-1 so finished jobs are deleted rather than kept for SAQ's
default 600 s (no result storage). Workers block on BLMOVE, so an idle worker starts a new
job at once. The worker loop is uvloop: `settings` is a callable SAQ calls before it
creates its loop, and it sets uvloop's event-loop policy there. SAQ has no bulk enqueue:
`bulk` gathers concurrent `Queue.enqueue` calls, BULK_CHUNK at a time (the queue itself
runs at most max_concurrent_ops, 20 by default, at once). The sync producer owns one event
loop. SAQ 0.26.4 imports typing_extensions without declaring it, and supports redis<8: see
requirements/saq.txt.
"""

from __future__ import annotations

import asyncio
import sys
from importlib.metadata import version
from typing import Any

import redis.asyncio
import uvloop
from _common import (
    COUNTER_KEY,
    Driver,
    OwnLoopProducer,
    async_counter_client,
    main,
    record_latency_async,
    redis_url,
)
from saq import Queue

CONCURRENCY = 10
BULK_CHUNK = 500
TTL = -1  # SAQ: "-1 means disabled": the job is deleted when it finishes


def _client() -> redis.asyncio.Redis:
    return async_counter_client()  # type: ignore[no-any-return]


async def noop(ctx: dict[str, Any], *, payload: dict[str, Any]) -> None:
    await _client().incr(COUNTER_KEY)


async def latency(ctx: dict[str, Any], *, payload: dict[str, Any]) -> None:
    await record_latency_async(_client(), payload)
    await _client().incr(COUNTER_KEY)


def settings() -> dict[str, Any]:
    """The worker settings, built in each worker process (SAQ calls a callable setting)."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return {
        "queue": Queue.from_url(redis_url()),
        "functions": [noop, latency],
        "concurrency": CONCURRENCY,
    }


class AsyncProducer:
    def __init__(self, url: str) -> None:
        self.queue = Queue.from_url(url)

    async def one(self, task: str, task_payload: dict[str, Any]) -> None:
        await self.queue.enqueue(task, payload=task_payload, ttl=TTL)

    async def close(self) -> None:
        await self.queue.disconnect()


async def async_producer(url: str) -> AsyncProducer:
    producer = AsyncProducer(url)
    await producer.queue.connect()
    return producer


def producer(url: str) -> OwnLoopProducer:
    return OwnLoopProducer(url, async_producer, BULK_CHUNK)


def describe() -> dict[str, Any]:
    settings = f"concurrency {CONCURRENCY}, uvloop, jobs enqueued with ttl=-1 (not kept)"
    return {
        "name": "SAQ",
        "version": version("saq"),
        "one_process": f"saq saq_driver.settings --workers 1, {settings}",
        "two_processes": f"saq saq_driver.settings --workers 2, {settings} each",
        "bulk_api": f"none in SAQ: asyncio.gather of Queue.enqueue, {BULK_CHUNK} at a time",
        "async_api": "Queue.enqueue",
    }


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, "-m", "saq", "saq_driver.settings", "--workers", str(processes)]
    return argv, {"BENCH_REDIS_URL": redis_url()}


if __name__ == "__main__":
    main(Driver(describe, producer, worker_command, async_producer=async_producer))
