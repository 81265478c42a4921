"""arq under the benchmark protocol (see _common.py); runs in the arq virtualenv.

Configuration: `arq arq_driver.WorkerSettings`, one worker process per `arq` command (arq has
no multi-process option), so "two processes" is two `arq` commands under one `sh`, in one
process group. max_jobs 200: arq starts jobs once per poll, at most about max_jobs at a
time, so 10 and 50 were poll-bound (about 200 and 500 tasks/s), while 200 (like 500 and
1000) is CPU-bound. keep_result=0 (no result storage); arq's logger at WARNING through
`--custom-log-dict` (at its default INFO it logs every job). The worker loop is uvloop (the
event-loop policy is set in the worker processes before arq makes its loop; ~15% less
worker CPU per job). poll_delay stays at arq's default 0.5 s: lower did not raise
throughput at max_jobs 200, but an idle worker starts a new job up to 0.5 s after it is
sent. arq has no bulk enqueue: `bulk` gathers concurrent `ArqRedis.enqueue_job` calls,
BULK_CHUNK at a time. The sync producer owns one event loop.
"""

from __future__ import annotations

import asyncio
import os
import shlex
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
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings

MAX_JOBS = 200
BULK_CHUNK = 500

if os.environ.get("BENCH_ARQ_WORKER"):  # only in the worker processes: arq then uses uvloop
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _client() -> redis.asyncio.Redis:
    return async_counter_client()  # type: ignore[no-any-return]


async def noop(ctx: dict[str, Any], task_payload: dict[str, Any]) -> None:
    await _client().incr(COUNTER_KEY)


async def latency(ctx: dict[str, Any], task_payload: dict[str, Any]) -> None:
    await record_latency_async(_client(), task_payload)
    await _client().incr(COUNTER_KEY)


class WorkerSettings:
    functions = (noop, latency)
    redis_settings = RedisSettings.from_dsn(os.environ.get("BENCH_REDIS_URL", "redis://"))
    max_jobs = MAX_JOBS
    keep_result = 0


LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["stderr"], "level": "WARNING"}},
}


class AsyncProducer:
    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool

    async def one(self, task: str, task_payload: dict[str, Any]) -> None:
        await self.pool.enqueue_job(task, task_payload)

    async def close(self) -> None:
        await self.pool.aclose()


async def async_producer(url: str) -> AsyncProducer:
    return AsyncProducer(await create_pool(RedisSettings.from_dsn(url)))


def producer(url: str) -> OwnLoopProducer:
    return OwnLoopProducer(url, async_producer, BULK_CHUNK)


def describe() -> dict[str, Any]:
    settings = f"max_jobs {MAX_JOBS}, keep_result=0, uvloop, poll_delay 0.5 s (default)"
    return {
        "name": "arq",
        "version": version("arq"),
        "one_process": f"1 `arq` worker process, {settings}",
        "two_processes": f"2 `arq` worker processes (arq has no --workers), {settings} each",
        "bulk_api": f"none in arq: asyncio.gather of ArqRedis.enqueue_job, {BULK_CHUNK} at a time",
        "async_api": "ArqRedis.enqueue_job",
    }


def worker_command(processes: int) -> tuple[list[str], dict[str, str]]:
    one = [sys.executable, "-m", "arq", "--custom-log-dict", "arq_driver.LOG_CONFIG",
           "arq_driver.WorkerSettings"]  # fmt: skip
    env = {"BENCH_ARQ_WORKER": "1", "BENCH_REDIS_URL": redis_url()}
    if processes == 1:
        return one, env
    # on SIGTERM the shell waits for the workers (which get it too) to shut down
    script = "trap wait TERM; " + " & ".join([shlex.join(one)] * processes) + " & wait"
    return ["/bin/sh", "-c", script], env


if __name__ == "__main__":
    main(Driver(describe, producer, worker_command, async_producer=async_producer))
