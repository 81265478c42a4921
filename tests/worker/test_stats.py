"""A real worker's traces for the dashboard: outcome counts and latencies in the shared
10 s buckets (read back by the Inspector's history), its registry description (tasks in
flight, processed, last heartbeat), and a retried task's attempt history."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from conveyor import Conveyor, TaskState
from conveyor.broker.inspect import AsyncInspector
from conveyor.broker.timeseries import FINE, OUTCOMES, Point
from tests.support.worker import LOAD_SLACK, running_worker, wait_all, wait_until


def counts(points: list[Point], before: float, after: float) -> Counter[str]:
    """Outcomes counted over a window's points read between the server times `before` and
    `after`: a bucket over holds rate x 10 s, the current one rate x the time it has run,
    which the reading's own time bounds."""
    total: Counter[str] = Counter()
    for p in points:
        start = p.t / 1000
        shortest, longest = (min(FINE.step, max(1.0, at - start)) for at in (before, after))
        for outcome in OUTCOMES:
            rate = getattr(p, outcome)
            fits = [n for n in range(101) if rate * shortest - 0.01 <= n <= rate * longest + 0.01]
            assert len(fits) == 1, (p, outcome, shortest, longest)
            total[outcome] += fits[0]
    return +total


async def counted(inspector: AsyncInspector, queue: str | None = None) -> Counter[str]:
    """Outcomes counted in the 15 minutes' history of `queue` (default: all)."""
    before = await inspector.server_time()
    step, points = await inspector.history("15m", queue)
    after = await inspector.server_time()
    assert step == FINE.step
    return counts(points, before, after)


@pytest.mark.timeout(60)
async def test_a_worker_leaves_outcome_counts_in_the_history(aapp: Conveyor) -> None:
    @aapp.task(max_retries=0)
    async def works(n: int) -> int:
        return n

    @aapp.task(max_retries=0)
    async def fails() -> None:
        raise ValueError("no")

    async with running_worker(aapp):
        handles = [works.enqueue(n) for n in range(3)]
        dead = [fails.enqueue() for _ in range(2)]
        await wait_all(handles, TaskState.SUCCEEDED)
        await wait_all(dead, TaskState.DEAD)
    # the worker wrote its tally once more as it stopped
    inspector = aapp.async_inspector()
    assert await counted(inspector) == Counter(succeeded=3, dead=2)
    assert await counted(inspector, "default") == Counter(succeeded=3, dead=2)
    assert await counted(inspector, "other") == Counter()
    _, points = await inspector.history("15m")
    assert any(p.run_p50 is not None and p.wait_p50 is not None for p in points)


@pytest.mark.timeout(60)
async def test_the_registry_describes_tasks_in_flight_and_processed(aapp: Conveyor) -> None:
    release = asyncio.Event()

    @aapp.task(max_retries=0)
    async def waits() -> None:
        await release.wait()

    @aapp.task(max_retries=0)
    async def quick() -> None:
        return None

    inspector = aapp.async_inspector()
    async with running_worker(aapp) as worker:
        held = waits.enqueue()
        done = [quick.enqueue() for _ in range(2)]
        await wait_all(done, TaskState.SUCCEEDED)

        async def described(in_flight: int, processed: int) -> bool:
            mine = [w for w in await inspector.workers() if w["id"] == worker.id]
            return bool(mine) and (mine[0]["in_flight"], mine[0]["processed"]) == (
                in_flight,
                processed,
            )

        await wait_until(lambda: described(1, 2), 5 + LOAD_SLACK, "a beat with 1 in flight")
        release.set()
        await wait_all([held], TaskState.SUCCEEDED)
        await wait_until(lambda: described(0, 3), 5 + LOAD_SLACK, "a beat with 3 processed")
        [description] = [w for w in await inspector.workers() if w["id"] == worker.id]
        assert time.time() - 5 - LOAD_SLACK < description["heartbeat_at"] <= time.time()


@pytest.mark.timeout(60)
async def test_a_task_that_fails_twice_keeps_both_attempts_in_its_history(
    aapp: Conveyor,
) -> None:
    tries = 0

    @aapp.task(max_retries=3)
    async def flaky() -> str:
        nonlocal tries
        tries += 1
        if tries <= 2:
            raise ValueError(f"attempt {tries} failed")
        return "ok"

    async with running_worker(aapp) as worker:
        handle = flaky.enqueue()
        await wait_all([handle], TaskState.SUCCEEDED)
    record = await handle.record_async()
    assert record is not None
    assert (record.attempts, record.failures) == (3, 2)
    assert [(a.number, a.outcome, a.worker) for a in record.history] == [
        (1, "retried", worker.id),
        (2, "retried", worker.id),
    ]
    errors = [a.error or {} for a in record.history]
    assert [(e.get("type"), e.get("message")) for e in errors] == [
        ("ValueError", "attempt 1 failed"),
        ("ValueError", "attempt 2 failed"),
    ]
    for attempt in record.history:
        assert attempt.started_at is not None and attempt.finished_at is not None
        assert attempt.started_at <= attempt.finished_at
    # and the history counts the retries apart from the successes
    assert await counted(aapp.async_inspector()) == Counter(retried=2, succeeded=1)
