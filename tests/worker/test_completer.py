"""The Completer: outcomes queued by the executor are written in batches, the successes of
a queue in one ack call; each outcome's callback learns whether its lease still held."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.broker.records import ClaimedTask
from conveyor.broker.scripts import Call
from conveyor.worker.completer import Completer
from conveyor.worker.leases import Leases
from tests.broker.seed import lose_lease


async def _claimed(app: Conveyor, count: int) -> tuple[Leases, list[ClaimedTask]]:
    """`count` tasks enqueued and claimed by worker w1, held in a Leases."""
    broker = app.async_broker()
    await app.enqueue_many_async([app.message("job", i) for i in range(count)])
    tasks = (await broker.run(broker.ops.claim("default", count, "w1"))).tasks
    leases = Leases()
    for task in tasks:
        leases.add(task)
    return leases, tasks


async def _written(completer: Completer) -> None:
    """Run the completer until everything queued is written, then stop it."""
    stop = asyncio.Event()
    job = asyncio.create_task(completer.run(stop))
    assert await completer.flush(5)
    stop.set()
    await asyncio.wait_for(job, 5)


async def test_a_batch_is_one_round_trip_and_a_lost_lease_answers_0(
    aapp: Conveyor, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = aapp.async_broker()
    leases, (first, lost, second, failing) = await _claimed(aapp, 4)
    lose_lease(aapp.sync_broker(), lost, "reclaimed")  # w2 holds it now, under token 2
    sent: list[Sequence[Call]] = []
    execute = broker.execute

    async def counted(calls: Sequence[Call], **options: Any) -> list[Any]:
        sent.append(calls)
        return await execute(calls, **options)

    monkeypatch.setattr(broker, "execute", counted)
    replies: dict[str, Any] = {}

    def note(task: ClaimedTask) -> Callable[[Any], None]:
        return lambda reply: replies.__setitem__(task.id, reply)

    completer = Completer(broker, leases)
    completer.ack(first, b'"one"', note(first))
    completer.ack(lost, b'"late"', note(lost))
    completer.submit(failing, broker.ops.retry(failing, 60, b'"error"'), note(failing))
    completer.ack(second, b'"two"', note(second))
    await _written(completer)

    assert [len(calls) for calls in sent] == [2]  # the retry, and one ack for three tasks
    assert replies == {first.id: 1, lost.id: 0, failing.id: 1, second.id: 1}
    assert len(leases) == 0  # released once written, the lost one too
    records = [aapp.get_record(t.id) for t in (first, lost, failing, second)]
    assert [(rec.state, rec.result) for rec in records if rec] == [
        (TaskState.SUCCEEDED, "one"),
        (TaskState.ACTIVE, None),  # w2's attempt goes on, untouched
        (TaskState.RETRYING, None),
        (TaskState.SUCCEEDED, "two"),
    ]
    assert r.hget(aapp.sync_broker().ops.task_keys(lost.id).task(lost.id), "worker") == b"w2"


async def test_an_error_reply_leaves_the_task_to_its_lease(aapp: Conveyor) -> None:
    leases, (task,) = await _claimed(aapp, 1)
    replies: list[Any] = []
    completer = Completer(aapp.async_broker(), leases)
    record_key = aapp.sync_broker().ops.task_keys(task.id).task(task.id)
    completer.submit(task, Call.command("INCR", record_key), replies.append)  # WRONGTYPE
    completer.submit(task, Call.command("ECHO", "written"), replies.append)
    await _written(completer)
    assert replies == [b"written"]  # the failed write called nobody back
    assert len(leases) == 0  # no longer renewed: the lease expires, the task runs again
    record = aapp.get_record(task.id)
    assert record is not None and record.state == TaskState.ACTIVE


async def test_flush_times_out_when_nothing_writes(aapp: Conveyor) -> None:
    leases, (task,) = await _claimed(aapp, 1)
    completer = Completer(aapp.async_broker(), leases)
    assert await completer.flush(0.1)  # nothing queued: flushed at once
    completer.ack(task, b"1")
    assert not await completer.flush(0.1)  # queued, but no run() to write it
    assert len(leases) == 1
