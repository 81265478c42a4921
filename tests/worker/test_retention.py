"""Bounded memory, end to end: a worker's finished tasks leave no keys behind once their
retention ends (set by the scripts that finish a task, swept by the recoverer). A
cross-cutting behaviour, so it has a file of its own; the recoverer's trimming of the
dead-letter queue by size is tested in test_recoverer.py."""

from __future__ import annotations

from collections.abc import Callable

import redis
from prometheus_client import REGISTRY

from conveyor import Conveyor
from tests.support.keyspace import dump, task_keys
from tests.support.worker import LOAD_SLACK, running_worker, wait_until


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

    outcomes = {(works.name, "succeeded"): 1.0, (fails.name, "dead"): 1.0}
    before = {key: processed(*key) for key in outcomes}
    async with running_worker(short_app):
        succeeded, dead = works.enqueue(), fails.enqueue()
        cancelled = works.enqueue(delay=60)
        assert cancelled.cancel()
        handles = {"succeeded": succeeded, "dead": dead, "cancelled": cancelled}
        # every record exists from its enqueue, and only a finished task's record expires:
        # once all are gone, each finished and then outlived its retention (0.3 s is too
        # short to be sure of reading the finished record first, on a loaded machine)

        async def all_gone() -> bool:
            return not any(task_keys(r, prefix, h.id) for h in handles.values())

        await wait_until(all_gone, 10 + LOAD_SLACK, "every key of the finished tasks to go")
    assert [await h.record_async() for h in handles.values()] == [None, None, None]
    # they did finish as meant to (the counters keep what the expired records no longer show)
    assert {key: processed(*key) - before[key] for key in outcomes} == outcomes
    left = dump(r, prefix)
    assert f"{prefix}:{{default}}:dead" not in left
    assert f"{prefix}:{{default}}:scheduled" not in left


def processed(task: str, outcome: str) -> float:
    """Attempts of `task` on the default queue that ended in `outcome`, in this process."""
    labels = {"queue": "default", "task": task, "outcome": outcome}
    return REGISTRY.get_sample_value("conveyor_tasks_processed_total", labels) or 0.0
