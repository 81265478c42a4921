"""The Recoverer: expired leases back to pending, tasks that lose their worker too often to
the dead letters, and the dead-letter queues kept within their age and size."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.broker.keys import GlobalKeys, QueueKeys
from conveyor.broker.ops import MAINTENANCE_BATCH
from conveyor.worker.recoverer import Recoverer
from tests.broker.seed import SHORT_LEASE, claim_one, redis_ms, seed_dead, wait_leases_expired
from tests.support.keyspace import dump, task_keys
from tests.support.worker import running_worker, wait_all, wait_until


async def test_a_sweep_recovers_every_queue_and_trims_the_dead_letters(
    app_with: Callable[..., Conveyor],
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = app_with(lease_timeout=SHORT_LEASE, max_crashes=2, dead_retention=60.0)
    emails = GlobalKeys(prefix).queue("emails")
    broker = app.sync_broker()
    lost = app.enqueue("job")
    claim_one(broker, "w1")
    poison = app.enqueue("job", queue="emails")
    r.hset(emails.task(poison.id), "crashes", 1)  # its worker was lost once already
    assert broker.run(broker.ops.claim("emails", 1, "w1")).tasks[0].id == poison.id
    [old] = seed_dead(r, keys, [redis_ms(r) - 120_000])  # past the 60 s retention
    wait_leases_expired(r, keys)
    wait_leases_expired(r, emails)
    caplog.set_level(logging.INFO, logger="conveyor.worker")
    recoverer = Recoverer(app.async_broker(), ("default", "emails"))
    wait = await recoverer.sweep()
    assert 0.8 * SHORT_LEASE / 2 <= wait <= 1.2 * SHORT_LEASE / 2  # jittered, not lockstep
    lost_record, poison_record = lost.record(), poison.record()
    assert lost_record is not None and (lost_record.state, lost_record.crashes) == (
        TaskState.PENDING, 1,
    )  # fmt: skip
    assert poison_record is not None
    assert (poison_record.state, poison_record.reason) == (TaskState.DEAD, "worker lost")
    assert task_keys(r, prefix, old) == []  # the old dead letter went with its record
    assert list(dump(r, prefix)[emails.dead]) == [poison.id]
    assert f"task {lost.id}: lease expired; returned to pending" in caplog.text
    assert f"task {poison.id}: its worker was lost too often; dead-lettered" in caplog.text
    assert "dropped 1 dead letters past the age or size limit" in caplog.text


async def test_a_full_batch_sweeps_again_at_once(
    app_with: Callable[..., Conveyor], r: redis.Redis, keys: QueueKeys
) -> None:
    app = app_with(lease_timeout=SHORT_LEASE)
    count = MAINTENANCE_BATCH + 1
    app.enqueue_many([app.message("job", i) for i in range(count)])
    broker = app.sync_broker()
    claimed = 0
    while claimed < count:
        claimed += len(broker.run(broker.ops.claim("default", 100, "w1")).tasks)
    wait_leases_expired(r, keys)
    recoverer = Recoverer(app.async_broker(), ("default",))
    assert await recoverer.sweep() == 0.0  # one batch recovered, more left behind it
    assert await recoverer.sweep() > 0.0
    assert int(r.zcard(keys.pending)) == count and not r.exists(keys.active)


async def test_the_dead_letter_queue_is_trimmed_to_its_size_keeping_the_newest(
    app_with: Callable[..., Conveyor], r: redis.Redis, prefix: str
) -> None:
    # the recoverer, which trims dead letters, runs every lease_timeout / 2
    short_app = app_with(lease_timeout=1.0, dead_letter_max_size=3)

    @short_app.task(max_retries=0)
    async def fails(n: int) -> None:
        raise ValueError(n)

    handles = short_app.enqueue_many([fails.message(n) for n in range(6)])
    dead_key = f"{prefix}:{{default}}:dead"
    async with running_worker(short_app, concurrency=1):  # they die in enqueue order
        await wait_all(handles[3:], TaskState.DEAD, 10, "the last to die")

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
