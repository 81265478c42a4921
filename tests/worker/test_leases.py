"""Leases of long tasks: heartbeats keep them, unless a handler stalls its whole worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from conveyor import Conveyor, TaskContext, TaskState
from conveyor.settings import Settings
from tests.support.handlers import read_ledger
from tests.support.worker import running_worker, wait_until

ROOT = Path(__file__).resolve().parents[2]
LEASE = 1.0
#: How long the GIL-holding handler runs: well past a lease plus a recoverer period.
HOLD = 5.0  # calibrated, so it may come out shorter on a loaded machine


@pytest.fixture
async def lease_app(settings: Settings) -> AsyncIterator[Conveyor]:
    """An app whose leases last one second."""
    app = Conveyor(settings=settings.replace(lease_timeout=LEASE))
    yield app
    await app.aclose()
    app.close()


async def test_heartbeats_keep_the_leases_of_long_tasks(lease_app: Conveyor) -> None:
    starts: list[tuple[str, int]] = []

    @lease_app.task(max_retries=0)
    async def slow_async(ctx: TaskContext) -> str:
        starts.append((ctx.task_id, ctx.token))
        await asyncio.sleep(3.5)
        return "async"

    @lease_app.task(max_retries=0)
    def slow_sync(ctx: TaskContext) -> str:
        starts.append((ctx.task_id, ctx.token))
        time.sleep(3.5)
        return "sync"

    # the second worker's recoverer would take over any lease left to expire
    async with running_worker(lease_app), running_worker(lease_app):
        handles = [slow_async.enqueue(), slow_sync.enqueue()]
        results = [await h.result_async(timeout=15) for h in handles]
    assert results == ["async", "sync"]
    assert sorted(starts) == sorted((h.id, 1) for h in handles)
    for handle in handles:
        record = await handle.record_async()
        assert record is not None
        assert (record.state, record.attempts, record.token, record.crashes) == (
            TaskState.SUCCEEDED, 1, 1, 0,
        )  # fmt: skip


@contextlib.contextmanager
def gil_workers(settings: Settings, log_dir: Path, count: int = 2) -> Iterator[list[Path]]:
    """`count` worker subprocesses running tests.worker.gil_tasks:app; yields their log files."""
    env = {
        **os.environ,
        "CONVEYOR_REDIS_URL": settings.redis_url,
        "CONVEYOR_PREFIX": settings.prefix,
        "CONVEYOR_LEASE_TIMEOUT": str(LEASE),
        "CONVEYOR_SHUTDOWN_GRACE": "1",
    }
    logs = [log_dir / f"gil-{i}.log" for i in range(count)]
    processes: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as files:
        try:
            for i, log in enumerate(logs):
                out = files.enter_context(log.open("wb"))
                command = [sys.executable, "-m", "conveyor", "worker", "tests.worker.gil_tasks:app",
                           "--processes", "1", "--worker-id", f"gil-{i}"]  # fmt: skip
                processes.append(
                    subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=out)
                )
            yield logs
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def _registered(app: Conveyor, count: int) -> None:
    inspector = app.async_inspector()

    async def all_up() -> bool:
        return len(await inspector.workers()) == count

    await wait_until(all_up, 15, f"{count} workers to register")


def _seconds(start: dict[str, object], end: dict[str, object]) -> float:
    return float(str(end["time"])) - float(str(start["time"]))


def _events(r: redis.Redis, prefix: str, event: str) -> list[dict[str, object]]:
    return [e for e in read_ledger(r, prefix) if e["event"] == event]


async def test_a_thread_holding_the_gil_past_its_lease_is_taken_over(
    lease_app: Conveyor, r: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    """The documented limitation: the stalled worker cannot renew its lease, so another
    worker recovers the task and runs it again; fencing drops the stalled attempt's ack."""
    url = lease_app.settings.redis_url
    with gil_workers(lease_app.settings, tmp_path) as logs:
        await _registered(lease_app, 2)
        handle = lease_app.enqueue("hold_gil", HOLD, url, prefix)
        assert await handle.result_async(timeout=20) == 2  # the takeover's attempt

        async def dropped() -> bool:
            return any("outcome dropped" in log.read_text() for log in logs)

        await wait_until(dropped, 15, "the stalled attempt's ack to be refused")
    starts = _events(r, prefix, "start")
    assert [(e["attempt"], e["token"]) for e in starts] == [(1, 1), (2, 2)]
    assert starts[0]["worker"] != starts[1]["worker"]
    first_end = next(e for e in _events(r, prefix, "end") if e["attempt"] == 1)
    assert _seconds(starts[0], first_end) > 2 * LEASE  # it really outlived its lease
    record = await handle.record_async()
    assert record is not None
    assert (record.state, record.attempts, record.token, record.crashes, record.result) == (
        TaskState.SUCCEEDED, 2, 2, 1, 2,
    )  # fmt: skip


async def test_the_same_handler_in_a_child_process_keeps_its_lease(
    lease_app: Conveyor, r: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    url = lease_app.settings.redis_url
    with gil_workers(lease_app.settings, tmp_path):
        await _registered(lease_app, 2)
        handle = lease_app.enqueue("hold_gil_in_process", HOLD, url, prefix)
        assert await handle.result_async(timeout=20) == 1
    [start] = _events(r, prefix, "start")
    [end] = _events(r, prefix, "end")
    assert start["pid"] == end["pid"] and (start["attempt"], start["token"]) == (1, 1)
    held = _seconds(start, end)
    assert held > 2 * LEASE, f"the handler held the GIL for only {held:.2f}s"
    record = await handle.record_async()
    assert record is not None
    assert (record.state, record.attempts, record.token, record.crashes) == (
        TaskState.SUCCEEDED, 1, 1, 0,
    )  # fmt: skip
