"""The Worker (worker/runtime.py): its start-up check of Redis, and the shutdown order it
owns: stop claiming, drain, give back what is left at once, write every outcome."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.producer import TaskHandle
from conveyor.worker.runtime import Worker
from tests.support import handlers
from tests.support.keyspace import dump
from tests.support.worker import LOAD_SLACK, running_worker, wait_all, wait_until


def _start(app: Conveyor, **options: Any) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(app, "default", **options)
    return worker, asyncio.create_task(worker.run())


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "conveyor.worker" and r.levelno == level
    ]


async def _run_until_started(app: Conveyor, caplog: pytest.LogCaptureFixture) -> None:
    """Start a worker, wait for its "started" line (logged after the check), stop it."""
    caplog.set_level(logging.INFO, logger="conveyor.worker")
    async with running_worker(app):

        async def started() -> bool:
            return any("started" in m for m in _messages(caplog, logging.INFO))

        await wait_until(started, 10, "the worker to start")


# -- start-up ----------------------------------------------------------------------------


async def test_an_evicting_redis_is_reported_as_an_error(
    aapp: Conveyor, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    r.config_set("maxmemory-policy", "allkeys-lru")
    try:
        await _run_until_started(aapp, caplog)
    finally:
        r.config_set("maxmemory-policy", "noeviction")
    errors = _messages(caplog, logging.ERROR)
    assert len(errors) == 1, errors
    assert "allkeys-lru" in errors[0] and "noeviction" in errors[0]


async def test_a_safe_redis_raises_no_error_but_warns_about_persistence(
    aapp: Conveyor, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    await _run_until_started(aapp, caplog)
    assert _messages(caplog, logging.ERROR) == []
    # the test server runs without AOF or RDB
    assert any("persists nothing" in m for m in _messages(caplog, logging.WARNING))


# -- shutdown ----------------------------------------------------------------------------


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


#: How long the blocking handlers run unless cut: longer than any grace below.
BLOCK = 60.0
#: A grace the fast stops below must skip: a drain would hold them for all of it, far
#: longer than the LOAD_SLACK they are allowed.
LONG_GRACE = 30.0


def _blocking_handlers(app: Conveyor, release: threading.Event) -> None:
    """Register long_async, long_thread (until `release`) and long_process (burn)."""

    @app.task(name="long_async")
    async def long_async() -> None:
        await asyncio.sleep(BLOCK)

    @app.task(name="long_thread")
    def long_thread() -> None:
        release.wait(BLOCK)  # released at the end of the test, so the thread ends

    app.task(name="long_process", executor="process")(handlers.burn)


@pytest.mark.parametrize(
    ("name", "args"),
    [("long_async", ()), ("long_thread", ()), ("long_process", (BLOCK,))],
)
async def test_past_the_grace_a_running_task_is_back_to_pending_at_once(
    app_with: Callable[..., Conveyor],
    r: redis.Redis,
    prefix: str,
    name: str,
    args: tuple[Any, ...],
) -> None:
    hasty_app = app_with(shutdown_grace=0.2)  # running tasks get 0.2 s to finish
    release = threading.Event()
    _blocking_handlers(hasty_app, release)
    try:
        worker, job = _start(hasty_app, processes=1)
        handle = hasty_app.enqueue(name, *args)
        await wait_all([handle], TaskState.ACTIVE, 10, "the task to start")
        stopping = time.monotonic()
        worker.stop()
        await asyncio.wait_for(job, BLOCK)
        took = time.monotonic() - stopping
        # read at once: back in pending without waiting for the lease to expire
        record = await handle.record_async()
    finally:
        release.set()
    assert record is not None
    assert (record.state, record.crashes, record.attempts) == (TaskState.PENDING, 0, 1)
    # the grace, plus what a loaded machine may add; waiting the task out would take 60 s
    grace = hasty_app.settings.shutdown_grace
    assert took < grace + LOAD_SLACK, f"stopping took {took:.2f}s with a grace of {grace}s"
    keys = dump(r, prefix)
    assert handle.id in keys[f"{prefix}:{{default}}:pending"]
    assert f"{prefix}:{{default}}:active" not in keys


async def _patient_worker_running_a_long_task(
    app_with: Callable[..., Conveyor],
) -> tuple[Worker, asyncio.Task[None], TaskHandle]:
    """A worker with a 30 s grace, running an async task that only a stop ends."""
    patient_app = app_with(shutdown_grace=LONG_GRACE)
    _blocking_handlers(patient_app, threading.Event())
    worker, job = _start(patient_app)
    handle = patient_app.enqueue("long_async")
    await wait_all([handle], TaskState.ACTIVE, 10, "the task to start")
    return worker, job, handle


async def test_fast_stop_skips_the_grace(app_with: Callable[..., Conveyor]) -> None:
    worker, job, handle = await _patient_worker_running_a_long_task(app_with)
    stopping = time.monotonic()
    worker.stop(fast=True)
    await asyncio.wait_for(job, BLOCK)
    took = time.monotonic() - stopping
    record = await handle.record_async()
    assert record is not None
    assert (record.state, record.crashes, record.attempts) == (TaskState.PENDING, 0, 1)
    # a drain would hold the stop for the whole 30 s grace: a loaded machine adds far less
    assert took < LOAD_SLACK < LONG_GRACE, f"a fast stop took {took:.2f}s"


async def test_fast_stop_cuts_a_drain_already_under_way(
    app_with: Callable[..., Conveyor], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.worker")
    worker, job, handle = await _patient_worker_running_a_long_task(app_with)
    stopping = time.monotonic()
    worker.stop()  # drains for up to 30 s ...

    async def draining() -> bool:
        return "stopping: 1 tasks running" in caplog.text

    await wait_until(draining, 10, "the drain to begin")
    assert not job.done()
    worker.stop(fast=True)  # ... until a second stop hurries it, as a second signal does
    await asyncio.wait_for(job, BLOCK)
    # counted from the first stop: the drain alone would last the whole 30 s grace
    took = time.monotonic() - stopping
    assert took < LOAD_SLACK < LONG_GRACE, f"the hurried drain took {took:.2f}s"
    record = await handle.record_async()
    assert record is not None and (record.state, record.crashes) == (TaskState.PENDING, 0)
