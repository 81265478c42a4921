"""SIGTERM and SIGINT drain a worker subprocess; a second signal stops it at once; no loss."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.settings import Settings
from tests.support.handlers import read_ledger
from tests.support.processes import WorkerProcess
from tests.support.worker import wait_until_sync

pytestmark = pytest.mark.slow


def started(r: redis.Redis, prefix: str, count: int) -> bool:
    return sum(e["event"] == "start" for e in read_ledger(r, prefix)) >= count


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


def test_unfinished_tasks_return_to_pending_at_once(
    settings: Settings, r: redis.Redis, tmp_path: Path
) -> None:
    app = Conveyor(settings=settings.replace(lease_timeout=30))
    handle = app.enqueue("record_async", "long", seconds=60)
    worker = WorkerProcess(settings.replace(lease_timeout=30), tmp_path, "--shutdown-grace", "0.5")
    try:
        wait_until_sync(lambda: started(r, settings.prefix, 1), 20, "the task to start")
        worker.signal(signal.SIGTERM)
        assert worker.wait(15) == 0, worker.log()
    finally:
        worker.stop()
    record = handle.record()
    # back to pending right away, not after the 30 s lease; no crash counted
    assert record is not None and (record.state, record.crashes) == (TaskState.PENDING, 0)


def test_second_signal_stops_fast_and_loses_nothing(
    settings: Settings, r: redis.Redis, tmp_path: Path
) -> None:
    app = Conveyor(settings=settings.replace(lease_timeout=30))
    handle = app.enqueue("record_async", "long", seconds=60)
    worker = WorkerProcess(settings.replace(lease_timeout=30), tmp_path, "--shutdown-grace", "60")
    try:
        wait_until_sync(lambda: started(r, settings.prefix, 1), 20, "the task to start")
        worker.signal(signal.SIGTERM)
        time.sleep(0.3)
        assert worker.alive()  # draining: the grace period is 60 s
        began = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait(15) == 0, worker.log()
        assert time.monotonic() - began < 10
    finally:
        worker.stop()
    record = handle.record()
    assert record is not None and (record.state, record.crashes) == (TaskState.PENDING, 0)
    assert "stopping now" in worker.log()
