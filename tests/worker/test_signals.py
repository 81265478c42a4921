"""SIGTERM and SIGINT: the first drains the worker, a second stops it at once; no loss.

The handlers in-process first, then a worker subprocess signalled as an orchestrator does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.producer import TaskHandle
from conveyor.settings import Settings
from conveyor.worker import signals
from tests.support.handlers import read_ledger
from tests.support.processes import WorkerProcess
from tests.support.worker import LOAD_SLACK, wait_until, wait_until_sync


async def test_the_first_signal_drains_and_the_second_hurries() -> None:
    stops: list[bool] = []  # what stop(fast) was called with
    uninstall = signals.install(stops.append)
    try:
        for signum, count in ((signal.SIGTERM, 1), (signal.SIGINT, 2)):
            os.kill(os.getpid(), signum)

            async def handled(count: int = count) -> bool:
                return len(stops) == count

            await wait_until(handled, 5, f"{signum.name} to be handled")
    finally:
        uninstall()
    assert stops == [False, True]
    # uninstalled: the signals act as they did before the worker ran
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler


def started(r: redis.Redis, prefix: str, count: int) -> bool:
    return sum(e["event"] == "start" for e in read_ledger(r, prefix)) >= count


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_drain_lets_running_tasks_finish(
    settings: Settings, r: redis.Redis, tmp_path: Path, signum: signal.Signals
) -> None:
    app = Conveyor(settings=settings)
    handles = [app.enqueue("record_async", f"job{i}", seconds=1.0) for i in range(3)]
    worker = WorkerProcess(settings, tmp_path, "--shutdown-grace", "10")
    try:
        wait_until_sync(lambda: started(r, settings.prefix, 3), 20, "tasks to start")
        worker.signal(signum)
        assert worker.wait(15) == 0, worker.log()
    finally:
        worker.stop()
    assert [h.status() for h in handles] == [TaskState.SUCCEEDED] * 3
    assert "draining" in worker.log()


@pytest.fixture
def long_lease(app_with: Callable[..., Conveyor]) -> Conveyor:
    """An app whose leases outlive the tests below: only a requeue brings a task back."""
    return app_with(lease_timeout=30)


@contextlib.contextmanager
def draining(
    app: Conveyor, r: redis.Redis, tmp_path: Path, grace: str
) -> Iterator[tuple[TaskHandle, WorkerProcess]]:
    """A worker subprocess with `grace` seconds to drain, sent SIGTERM once it started a
    60 s task."""
    handle = app.enqueue("record_async", "long", seconds=60)
    worker = WorkerProcess(app.settings, tmp_path, "--shutdown-grace", grace)
    try:
        wait_until_sync(lambda: started(r, app.settings.prefix, 1), 20, "the task to start")
        worker.signal(signal.SIGTERM)
        yield handle, worker
    finally:
        worker.stop()


@pytest.mark.slow
def test_unfinished_tasks_return_to_pending_at_once(
    long_lease: Conveyor, r: redis.Redis, tmp_path: Path
) -> None:
    with draining(long_lease, r, tmp_path, grace="0.5") as (handle, worker):
        assert worker.wait(15) == 0, worker.log()
    record = handle.record()
    # back to pending right away, not after the 30 s lease; no crash counted
    assert record is not None and (record.state, record.crashes) == (TaskState.PENDING, 0)


@pytest.mark.slow
def test_second_signal_stops_fast_and_loses_nothing(
    long_lease: Conveyor, r: redis.Redis, tmp_path: Path
) -> None:
    with draining(long_lease, r, tmp_path, grace="60") as (handle, worker):
        wait_until_sync(lambda: "draining" in worker.log(), 20, "the first signal's drain")
        assert worker.alive()  # draining: the grace period is 60 s
        began = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.log()
        # the drain would last the whole 60 s grace; a loaded machine adds far less
        took = time.monotonic() - began
        assert took < LOAD_SLACK, f"the second signal's stop took {took:.2f}s"
    record = handle.record()
    assert record is not None and (record.state, record.crashes) == (TaskState.PENDING, 0)
    assert "stopping now" in worker.log()
