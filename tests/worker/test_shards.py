"""Sharded queues on a real Redis: producers spread a queue's tasks over its shards,
workers serve them all, and keys keep their guarantees across the split."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from conveyor import Conveyor, TaskContext, TaskState, chain
from conveyor.ids import queue_of
from conveyor.settings import Settings
from conveyor.shards import logical_queue, shard_names
from tests.api.conftest import api_client
from tests.api.helpers import enqueue, record
from tests.support.worker import running_worker, wait_all, wait_until

SHARDS = {"emails": 4}


def _recorder(app: Conveyor, seen: list[str]) -> None:
    """Task "note" appends the queue it ran from (a shard's name) to `seen`."""

    @app.task(name="note", queue="emails")
    async def note(value: int = 0, *, ctx: TaskContext) -> int:
        seen.append(ctx.queue)
        return value + 1


async def test_a_split_queue_spreads_its_tasks_and_one_worker_serves_every_shard(
    app_with: Callable[..., Conveyor],
) -> None:
    app = app_with(shards=SHARDS)
    seen: list[str] = []
    _recorder(app, seen)
    handles = app.enqueue_many([app.message("note") for _ in range(200)])
    handles += [await app.enqueue_async("note") for _ in range(40)]
    placed = Counter(queue_of(h.id) for h in handles)
    assert placed == {name: 60 for name in shard_names("emails", 4)}  # in turns
    registered = await app.async_inspector().queue_names()
    assert set(shard_names("emails", 4)) <= set(registered)
    async with running_worker(app, "emails", concurrency=8):
        await wait_all(handles, TaskState.SUCCEEDED, 20, "every shard's tasks to run")
    assert Counter(seen) == placed


async def test_a_unique_key_and_a_concurrency_limit_hold_across_the_shards(
    app_with: Callable[..., Conveyor],
) -> None:
    app = app_with(shards=SHARDS)
    running, most = 0, 0

    @app.task(name="limited", queue="emails", concurrency=2, concurrency_key="smtp")
    async def limited(n: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1

    @app.task(name="once", queue="emails", unique=True, unique_key="report")
    async def once() -> None: ...

    limited_handles = app.enqueue_many([limited.message(n) for n in range(20)])
    assert len({queue_of(h.id) for h in limited_handles}) == 1  # the limit's shard
    unique = [app.enqueue("once") for _ in range(8)]
    assert len({h.id for h in unique}) == 1  # each later enqueue met the first
    async with running_worker(app, "emails", concurrency=10):
        await wait_all(limited_handles + unique[:1], TaskState.SUCCEEDED, 20)
    assert most == 2


async def test_an_idempotency_key_returns_the_same_task_on_a_split_queue(
    app_with: Callable[..., Conveyor],
) -> None:
    app = app_with(shards=SHARDS)
    first = app.enqueue("note", queue="emails", idempotency_key="order-42")
    again = [app.enqueue("note", queue="emails", idempotency_key="order-42") for _ in range(6)]
    assert {h.id for h in again} == {first.id}
    assert all(h.replayed for h in again)


async def test_a_worker_drains_shards_its_settings_no_longer_declare(
    app_with: Callable[..., Conveyor],
) -> None:
    wide = app_with(shards={"emails": 6})
    seen: list[str] = []
    _recorder(wide, seen)
    handles = wide.enqueue_many([wide.message("note") for _ in range(60)])
    assert len({queue_of(h.id) for h in handles}) == 6
    narrow = app_with(shards={"emails": 2})  # the split was reduced; nothing may strand
    _recorder(narrow, seen)
    async with running_worker(narrow, "emails", concurrency=8) as worker:
        await wait_all(handles, TaskState.SUCCEEDED, 20, "the tasks of every shard to run")
    assert worker.queues.served == shard_names("emails", 6)
    # and one with no split at all serves them as well: shards are found, not configured
    unsplit = app_with()
    _recorder(unsplit, seen)
    more = wide.enqueue_many([wide.message("note") for _ in range(12)])
    async with running_worker(unsplit, "emails", concurrency=4):
        await wait_all(more, TaskState.SUCCEEDED, 20, "an unsplit worker to serve every shard")


async def test_a_workflow_on_a_split_queue_places_each_step_and_runs_to_its_end(
    app_with: Callable[..., Conveyor],
) -> None:
    app = app_with(shards=SHARDS)
    seen: list[str] = []
    _recorder(app, seen)
    note = app.tasks["note"]
    handle = app.enqueue(chain(note.message(0), note.message(), note.message(), note.message()))
    async with running_worker(app, "emails", concurrency=4):
        assert await handle.result_async(timeout=20) == 4
    assert {logical_queue(q) for q in seen} == {"emails"}
    assert len(set(seen)) > 1  # the steps went in turns, not all to one shard


async def test_the_inspector_finds_a_task_of_any_shard_by_its_id(
    app_with: Callable[..., Conveyor],
) -> None:
    app = app_with(shards=SHARDS)
    handles = app.enqueue_many([app.message("note", queue="emails") for _ in range(4)])
    inspector = app.async_inspector()
    for handle in handles:
        record = await inspector.task(handle.id)
        assert record is not None and record.state == TaskState.PENDING

    async def all_pending() -> bool:
        stats = await inspector.queue_stats(list(shard_names("emails", 4)))
        return sum(s.pending for s in stats) == 4

    await wait_until(all_pending, 5, "the shards' depths to add up")


async def test_the_api_places_a_split_queue_s_tasks_on_its_shards(settings: Settings) -> None:
    async with api_client(settings.replace(shards={**SHARDS, "default": 2})) as client:
        ids = [await enqueue(client, "note", queue="emails") for _ in range(8)]
        assert {queue_of(i) for i in ids} == set(shard_names("emails", 4))
        seed = [await client.post("/task", json={"type": "note"}) for _ in range(2)]
        assert all(response.status_code == 202 for response in seed)
        seed_ids = [response.json()["task_id"] for response in seed]
        assert {queue_of(i) for i in seed_ids} == set(shard_names("default", 2))
        for task_id in ids + seed_ids:  # each is found by its id, whatever its shard
            assert (await record(client, task_id))["state"] == "pending"
        stats = (await client.get("/stats")).json()
        assert stats["pending"] == 10  # summed over every shard


async def test_pausing_a_split_queue_pauses_every_shard_and_resuming_resumes_them(
    app_with: Callable[..., Conveyor],
) -> None:
    app = app_with(shards=SHARDS)
    seen: list[str] = []
    _recorder(app, seen)
    extra = app_with(shards={"emails": 6}).enqueue("note", queue="emails~5")  # beyond 4
    inspector = app.async_inspector()
    stats = await inspector.set_paused("emails", True)
    assert stats.name == "emails" and stats.paused
    every = [*shard_names("emails", 4), "emails~5"]
    assert all(s.paused for s in await inspector.queue_stats(every))
    handles = [*app.enqueue_many([app.message("note") for _ in range(8)]), extra]
    async with running_worker(app, "emails", concurrency=4):
        await asyncio.sleep(0.5)
        assert seen == []  # no shard was served while the queue was paused
        await inspector.set_paused("emails", False)
        assert not any(s.paused for s in await inspector.queue_stats(every))
        await wait_all(handles, TaskState.SUCCEEDED, 20, "every shard to run once resumed")
    # pausing one shard by its name pauses that shard alone
    await inspector.set_paused("emails~2", True)
    paused = {s.name: s.paused for s in await inspector.queue_stats(every)}
    assert paused == {name: name == "emails~2" for name in every}
