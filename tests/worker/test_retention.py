"""Bounded memory: finished tasks leave no keys behind, the dead-letter queue stays bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.producer import TaskHandle
from conveyor.settings import Settings
from tests.support.keyspace import dump, task_keys
from tests.support.worker import running_worker, wait_until

#: The recoverer, which trims dead letters, runs every lease_timeout / 2.
LEASE = 1.0


@pytest.fixture
async def make_app(settings: Settings) -> AsyncIterator[Callable[..., Conveyor]]:
    """Makes apps with a one-second lease and other overrides; closes them after the test."""
    apps: list[Conveyor] = []

    def make(**overrides: Any) -> Conveyor:
        apps.append(Conveyor(settings=settings.replace(lease_timeout=LEASE, **overrides)))
        return apps[-1]

    yield make
    for app in apps:
        await app.aclose()
        app.close()


async def _states(handles: Sequence[TaskHandle], state: TaskState) -> bool:
    for handle in handles:
        record = await handle.record_async()
        if record is None or record.state != state:
            return False
    return True


async def test_finished_tasks_leave_no_keys_after_their_retention(
    make_app: Callable[..., Conveyor], r: redis.Redis, prefix: str
) -> None:
    short_app = make_app(succeeded_retention=0.3, dead_retention=0.3, cancelled_retention=0.3)

    @short_app.task(max_retries=0)
    async def works() -> str:
        return "ok"

    @short_app.task(max_retries=0)
    async def fails() -> None:
        raise ValueError("no")

    async with running_worker(short_app):
        succeeded, dead = works.enqueue(), fails.enqueue()
        cancelled = works.enqueue(delay=60)
        assert cancelled.cancel()
        await wait_until(lambda: _states([succeeded], TaskState.SUCCEEDED), 10, "success")
        await wait_until(lambda: _states([dead], TaskState.DEAD), 10, "the dead letter")
        assert task_keys(r, prefix, dead.id)  # its record and its dead-letter entry, for now
        handles = {"succeeded": succeeded, "dead": dead, "cancelled": cancelled}

        async def all_gone() -> bool:
            return not any(task_keys(r, prefix, h.id) for h in handles.values())

        await wait_until(all_gone, 10, "every key of the finished tasks to go")
    assert [await h.record_async() for h in handles.values()] == [None, None, None]
    left = dump(r, prefix)
    assert f"{prefix}:{{default}}:dead" not in left
    assert f"{prefix}:{{default}}:scheduled" not in left


async def test_the_dead_letter_queue_is_trimmed_to_its_size_keeping_the_newest(
    make_app: Callable[..., Conveyor], r: redis.Redis, prefix: str
) -> None:
    short_app = make_app(dead_letter_max_size=3)

    @short_app.task(max_retries=0)
    async def fails(n: int) -> None:
        raise ValueError(n)

    handles = short_app.enqueue_many([fails.message(n) for n in range(6)])
    dead_key = f"{prefix}:{{default}}:dead"
    async with running_worker(short_app, concurrency=1):  # they die in enqueue order
        await wait_until(lambda: _states(handles[3:], TaskState.DEAD), 10, "the last to die")

        async def trimmed() -> bool:
            return int(r.zcard(dead_key)) == 3

        await wait_until(trimmed, 10, "the recoverer to trim the dead letters")
    kept = list(dump(r, prefix)[dead_key])
    assert sorted(kept) == sorted(h.id for h in handles[3:])
    for handle in handles[:3]:
        assert await handle.record_async() is None  # dropped with their records
        assert task_keys(r, prefix, handle.id) == []
    for handle in handles[3:]:
        record = await handle.record_async()
        assert record is not None and record.state == TaskState.DEAD
