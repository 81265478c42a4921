"""Taskiq (with taskiq-redis) under the benchmark protocol (see _common.py).

Configuration: `taskiq worker taskiq_driver:broker --workers P` (a supervisor process plus
P worker processes), no result backend, taskiq's logging at WARNING, and taskiq-redis's
RedisStreamBroker (XADD; workers XREADGROUP up to 100 messages a call and XACK each): on
e2e it was clearly faster than ListQueueBroker (one BRPOP round trip per message, one
fetch at a time per process) on a busy machine and as fast on a quieter one, at the same
worker CPU per task (the stream keeps acked entries: the broker's default, no maxlen).
--max-async-tasks is taskiq's default, 100: 50 and 200 measured the same within noise, 10
slower. The taskiq worker runs on uvloop by itself when uvloop is installed. Taskiq has no
bulk enqueue: `bulk` gathers concurrent `kiq` calls, BULK_CHUNK at a time. The producers
use a broker of their own, started as a client (as taskiq asks; for the stream broker that
also creates the consumer group, so tasks sent before the workers start are delivered),
through `task.kicker().with_broker(...)`; the sync producer owns one event loop.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import version
from typing import Any

import redis.asyncio
from _common import (
    COUNTER_KEY,
    Driver,
    OwnLoopProducer,
    async_counter_client,
    main,
    record_latency_async,
    redis_url,
)
from taskiq import AsyncBroker, AsyncTaskiqDecoratedTask
from taskiq_redis import RedisStreamBroker

BROKER_CLASS = RedisStreamBroker
MAX_ASYNC_TASKS = 100
BULK_CHUNK = 100


def _broker(url: str) -> AsyncBroker:
    return BROKER_CLASS(url)


# the workers' broker: BENCH_REDIS_URL is set in their environment
broker = _broker(os.environ.get("BENCH_REDIS_URL", "redis://"))


def _client() -> redis.asyncio.Redis:
    return async_counter_client()  # type: ignore[no-any-return]


@broker.task(task_name="noop")
async def noop(task_payload: dict[str, Any]) -> None:
    await _client().incr(COUNTER_KEY)


@broker.task(task_name="latency")
async def latency(task_payload: dict[str, Any]) -> None:
    await record_latency_async(_client(), task_payload)
    await _client().incr(COUNTER_KEY)


TASKS: dict[str, AsyncTaskiqDecoratedTask[Any, Any]] = {"noop": noop, "latency": latency}


class AsyncProducer:
    def __init__(self, url: str) -> None:
        self.broker = _broker(url)

    async def one(self, task: str, task_payload: dict[str, Any]) -> None:
        await TASKS[task].kicker().with_broker(self.broker).kiq(task_payload)

    async def close(self) -> None:
        await self.broker.shutdown()


async def async_producer(url: str) -> AsyncProducer:
    producer = AsyncProducer(url)
    await producer.broker.startup()
    return producer


def producer(url: str) -> OwnLoopProducer:
    return OwnLoopProducer(url, async_producer, BULK_CHUNK)


def describe() -> dict[str, Any]:
    settings = f"{BROKER_CLASS.__name__}, --max-async-tasks {MAX_ASYNC_TASKS}, uvloop"
    settings += ", no result backend"
    return {
        "name": "Taskiq",
        "version": f"taskiq {version('taskiq')}, taskiq-redis {version('taskiq-redis')}",
        "one_process": f"taskiq worker --workers 1 (+ its supervisor process), {settings}",
        "two_processes": f"taskiq worker --workers 2 (+ its supervisor process), {settings}",
        "bulk_api": f"none in Taskiq: asyncio.gather of task.kiq, {BULK_CHUNK} at a time",
        "async_api": "task.kiq (AsyncKicker.kiq)",
    }


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    argv = [sys.executable, "-m", "taskiq", "worker", "taskiq_driver:broker",
            "--workers", str(processes), "--max-async-tasks", str(MAX_ASYNC_TASKS),
            "--log-level", "WARNING"]  # fmt: skip
    return argv, {"BENCH_REDIS_URL": redis_url()}


if __name__ == "__main__":
    main(Driver(describe, producer, worker_command, async_producer=async_producer))
