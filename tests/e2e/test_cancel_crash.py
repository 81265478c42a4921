"""SIGKILL and the two features that outlive an attempt: a checkpoint saved before the kill
reaches the next attempt, and a task cancelled while its worker dies ends cancelled after
recovery, never run again."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.settings import Settings
from tests.support.handlers import read_ledger
from tests.support.processes import WorkerProcess
from tests.support.worker import wait_until_sync

pytestmark = pytest.mark.slow

APP = "tests.support.cancel_tasks:app"


@pytest.fixture
def fast_lease(settings: Settings) -> Settings:
    return settings.replace(lease_timeout=1.5)


@pytest.fixture
def app(fast_lease: Settings) -> Iterator[Conveyor]:
    made = Conveyor(settings=fast_lease)
    yield made
    made.close()


def starts(r: redis.Redis, settings: Settings, task_id: str) -> list[dict[str, object]]:
    return [e for e in read_ledger(r, settings.prefix) if e["id"] == task_id]


def test_a_checkpoint_saved_before_a_sigkill_reaches_the_next_attempt(
    app: Conveyor, fast_lease: Settings, r: redis.Redis, tmp_path: Path
) -> None:
    handle = app.enqueue("resume")
    first = WorkerProcess(fast_lease, tmp_path, app=APP)
    second = None
    try:
        wait_until_sync(lambda: bool(starts(r, fast_lease, handle.id)), 20, "the first run")
        record = handle.record()
        assert record is not None and record.checkpoint == {"done": 3}
        assert record.progress is not None and record.progress["message"] == "3 of 10"
        first.signal(signal.SIGKILL)
        first.wait(10)
        second = WorkerProcess(fast_lease, tmp_path, app=APP)
        assert handle.result(timeout=30) == {"done": 3}  # what the second attempt found
    finally:
        first.stop()
        if second is not None:
            second.signal(signal.SIGTERM)
            assert second.wait(15) == 0, second.log()
    record = handle.record()
    assert record is not None and (record.attempts, record.crashes) == (2, 1)
    [start] = starts(r, fast_lease, handle.id)  # the second attempt resumed, did not start over
    assert start["pid"] == first.pid


def test_a_task_cancelling_when_its_worker_is_sigkilled_ends_cancelled(
    app: Conveyor, fast_lease: Settings, r: redis.Redis, tmp_path: Path
) -> None:
    # `hold` is a thread handler that never looks at ctx.cancelled: it stays cancelling
    handle = app.enqueue("hold", "stubborn")
    first = WorkerProcess(fast_lease, tmp_path, app=APP)
    second = None
    try:
        wait_until_sync(lambda: bool(starts(r, fast_lease, handle.id)), 20, "the first run")
        assert handle.cancel() is True
        time.sleep(fast_lease.heartbeat_interval * 2)  # beats renew its lease meanwhile
        assert handle.status() is TaskState.CANCELLING
        first.signal(signal.SIGKILL)
        first.wait(10)
        second = WorkerProcess(fast_lease, tmp_path, app=APP)
        wait_until_sync(lambda: handle.status() is TaskState.CANCELLED, 30, "recovery")
        time.sleep(fast_lease.lease_timeout)  # time enough to run it again, were it requeued
    finally:
        first.stop()
        if second is not None:
            second.signal(signal.SIGTERM)
            assert second.wait(15) == 0, second.log()
    record = handle.record()
    assert record is not None and record.state is TaskState.CANCELLED
    assert (record.attempts, record.crashes, record.failures) == (1, 0, 0)
    assert [a.outcome for a in record.history] == ["cancelled"]
    assert [e["pid"] for e in starts(r, fast_lease, handle.id)] == [first.pid]  # never rerun
