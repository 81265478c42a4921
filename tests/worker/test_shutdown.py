"""Stopping a worker in-process: drain, then give back what is left at once, deregister."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.producer import TaskHandle
from conveyor.settings import Settings
from conveyor.worker.runtime import Worker
from tests.support import handlers
from tests.support.keyspace import dump
from tests.support.worker import wait_until


@pytest.fixture
async def hasty_app(settings: Settings) -> AsyncIterator[Conveyor]:
    """An app whose workers give running tasks only 0.2 s to finish when stopping."""
    app = Conveyor(settings=settings.replace(shutdown_grace=0.2))
    yield app
    await app.aclose()
    app.close()


def _start(app: Conveyor, **options: Any) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(app, "default", **options)
    return worker, asyncio.create_task(worker.run())


async def _active(handle: TaskHandle) -> bool:
    record = await handle.record_async()
    return record is not None and record.state == TaskState.ACTIVE


async def test_stop_lets_a_running_task_finish(aapp: Conveyor) -> None:
    started = asyncio.Event()

    @aapp.task
    async def short(n: int) -> int:
        started.set()
        await asyncio.sleep(0.5)
        return n

    worker, job = _start(aapp)
    handle = short.enqueue(1)
    await asyncio.wait_for(started.wait(), 10)
    worker.stop()
    await asyncio.wait_for(job, 10)
    record = await handle.record_async()
    assert record is not None
    assert (record.state, record.attempts, record.result) == (TaskState.SUCCEEDED, 1, 1)


async def test_nothing_is_claimed_once_stop_is_called(aapp: Conveyor) -> None:
    """stop() lands just as a slot frees up (as a SIGTERM may): the fetcher must not claim."""
    worker = Worker(aapp, "default", concurrency=1)

    @aapp.task
    async def stops_the_worker(n: int) -> int:
        if n == 1:
            worker.stop()  # then returns, freeing the only slot
        return n

    first, second = aapp.enqueue_many([stops_the_worker.message(1), stops_the_worker.message(2)])
    await asyncio.wait_for(worker.run(), 10)
    record = await first.record_async()
    assert record is not None and record.state == TaskState.SUCCEEDED
    record = await second.record_async()
    assert record is not None
    assert (record.state, record.attempts, record.token) == (TaskState.PENDING, 0, 0)


def _blocking_handlers(app: Conveyor, release: threading.Event) -> None:
    """Register long_async, long_thread (until `release`) and long_process (burn)."""

    @app.task(name="long_async")
    async def long_async() -> None:
        await asyncio.sleep(30)

    @app.task(name="long_thread")
    def long_thread() -> None:
        release.wait(30)  # released at the end of the test, so the thread ends

    app.task(name="long_process", executor="process")(handlers.burn)


@pytest.mark.parametrize(
    ("name", "args"),
    [("long_async", ()), ("long_thread", ()), ("long_process", (30,))],
)
async def test_past_the_grace_a_running_task_is_back_to_pending_at_once(
    hasty_app: Conveyor, r: redis.Redis, prefix: str, name: str, args: tuple[Any, ...]
) -> None:
    release = threading.Event()
    _blocking_handlers(hasty_app, release)
    try:
        worker, job = _start(hasty_app, processes=1)
        handle = hasty_app.enqueue(name, *args)
        await wait_until(lambda: _active(handle), 10, "the task to start")
        stopping = time.monotonic()
        worker.stop()
        await asyncio.wait_for(job, 10)
        took = time.monotonic() - stopping
        # read at once: back in pending without waiting for the lease to expire
        record = await handle.record_async()
    finally:
        release.set()
    assert record is not None
    assert (record.state, record.crashes, record.attempts) == (TaskState.PENDING, 0, 1)
    assert took < 2.0, f"stopping took {took:.2f}s with a grace of 0.2s"
    keys = dump(r, prefix)
    assert handle.id in keys[f"{prefix}:{{default}}:pending"]
    assert f"{prefix}:{{default}}:active" not in keys


async def test_fast_stop_skips_the_grace(aapp: Conveyor) -> None:
    assert aapp.settings.shutdown_grace >= 5.0
    release = threading.Event()
    _blocking_handlers(aapp, release)
    worker, job = _start(aapp)
    handle = aapp.enqueue("long_async")
    await wait_until(lambda: _active(handle), 10, "the task to start")
    stopping = time.monotonic()
    worker.stop(fast=True)
    await asyncio.wait_for(job, 10)
    took = time.monotonic() - stopping
    record = await handle.record_async()
    assert record is not None
    assert (record.state, record.crashes, record.attempts) == (TaskState.PENDING, 0, 1)
    assert took < 2.0, f"a fast stop took {took:.2f}s"


async def test_fast_stop_cuts_a_drain_already_under_way(
    aapp: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.worker")
    release = threading.Event()
    _blocking_handlers(aapp, release)
    worker, job = _start(aapp)
    handle = aapp.enqueue("long_async")
    await wait_until(lambda: _active(handle), 10, "the task to start")
    worker.stop()  # drains for up to 5 s ...

    async def draining() -> bool:
        return "stopping: 1 tasks running" in caplog.text

    await wait_until(draining, 5, "the drain to begin")
    assert not job.done()
    stopping = time.monotonic()
    worker.stop(fast=True)  # ... until a second stop hurries it, as a second signal does
    await asyncio.wait_for(job, 10)
    assert time.monotonic() - stopping < 2.0
    record = await handle.record_async()
    assert record is not None and (record.state, record.crashes) == (TaskState.PENDING, 0)


async def test_a_worker_is_registered_while_running_and_deregistered_after(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    inspector = aapp.async_inspector()
    worker, job = _start(aapp, concurrency=7, worker_id="shutdown-test-worker")

    async def registered() -> bool:
        return [w["id"] for w in await inspector.workers()] == ["shutdown-test-worker"]

    await wait_until(registered, 10, "the worker to register")
    [info] = await inspector.workers()
    assert (info["queues"], info["concurrency"]) == (["default"], 7)
    worker.stop()
    await asyncio.wait_for(job, 10)
    assert await inspector.workers() == []
    assert not [k for k in dump(r, prefix) if "worker" in k]
