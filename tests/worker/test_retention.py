"""Bounded memory, end to end: a worker's finished tasks leave no keys behind once their
retention ends (set by the scripts that finish a task, swept by the recoverer). A
cross-cutting behaviour, so it has a file of its own; the recoverer's trimming of the
dead-letter queue by size is tested in test_recoverer.py."""

from __future__ import annotations

from collections.abc import Callable

import redis

from conveyor import Conveyor, TaskState
from tests.support.keyspace import dump, task_keys
from tests.support.worker import running_worker, wait_all, wait_until


async def test_finished_tasks_leave_no_keys_after_their_retention(
    app_with: Callable[..., Conveyor], r: redis.Redis, prefix: str
) -> None:
    # the recoverer, which drops expired dead letters, runs every lease_timeout / 2
    short_app = app_with(
        lease_timeout=1.0, succeeded_retention=0.3, dead_retention=0.3, cancelled_retention=0.3
    )

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
        await wait_all([succeeded], TaskState.SUCCEEDED, 10, "success")
        await wait_all([dead], TaskState.DEAD, 10, "the dead letter")
        assert task_keys(r, prefix, dead.id)  # its record and its dead-letter entry, for now
        handles = {"succeeded": succeeded, "dead": dead, "cancelled": cancelled}

        async def all_gone() -> bool:
            return not any(task_keys(r, prefix, h.id) for h in handles.values())

        await wait_until(all_gone, 10, "every key of the finished tasks to go")
    assert [await h.record_async() for h in handles.values()] == [None, None, None]
    left = dump(r, prefix)
    assert f"{prefix}:{{default}}:dead" not in left
    assert f"{prefix}:{{default}}:scheduled" not in left
