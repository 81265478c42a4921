"""Running a worker inside a test, and waiting for conditions without fixed sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from conveyor import Conveyor, TaskState
from conveyor.producer import TaskHandle
from conveyor.worker.runtime import Worker

#: Seconds a busy machine may add to a step whose length the code bounds (a stop, a drain
#: past its grace, a recovery): an unloaded run needs well under one, and each test that
#: uses it makes the wrong behaviour cost clearly more (a 30 s grace or task, say).
LOAD_SLACK = 10.0


@contextlib.asynccontextmanager
async def running_worker(
    app: Conveyor, queues: str = "default", **options: Any
) -> AsyncIterator[Worker]:
    """A Worker running in this loop for the duration of the block; stopped cleanly after."""
    worker = Worker(app, queues, **options)
    job = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(job, 30)


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = ""
) -> None:
    """Poll `check` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        await asyncio.sleep(0.02)


def wait_until_sync(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Blocking twin of `wait_until`, for tests that drive subprocesses."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(0.02)


async def in_state(handles: Sequence[TaskHandle], state: TaskState) -> bool:
    """True when every task of `handles` has a record in `state`."""
    for handle in handles:
        record = await handle.record_async()
        if record is None or record.state != state:
            return False
    return True


async def wait_all(
    handles: Sequence[TaskHandle], state: TaskState, timeout: float = 10.0, what: str = ""
) -> None:
    """Wait until every task of `handles` is in `state`; fail the test after `timeout`."""
    await wait_until(lambda: in_state(handles, state), timeout, what or f"tasks to be {state}")
