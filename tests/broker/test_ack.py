"""ack.lua: a fenced success releases the lease, stores the result and expires the record."""

from __future__ import annotations

import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.settings import MAX_CLAIM_BATCH, Settings
from tests.broker.conftest import Claimed, Run, StaleClaim, Unchanged
from tests.broker.seed import (
    assert_ttl,
    claim,
    claim_one,
    lose_lease,
)
from tests.support.keyspace import dump, moved, task_keys
from tests.support.worker import wait_until_sync


def test_ack_records_the_success_and_expires_the_record(
    claimed: Claimed,
    run: Run,
    broker: SyncBroker,
    settings: Settings,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
) -> None:
    task, other = claimed(), claimed()
    ran = run(broker.ops.ack([(task, b'{"total":3}')]))
    assert ran.reply == [1]
    # the other lease is untouched
    assert dump(r, prefix) == moved(
        ran.before, keys, task.id, source="active",
        state="succeeded", finished_at=ran.window.now, result='{"total":3}',
    )  # fmt: skip
    assert_ttl(r, keys.task(task.id), settings.succeeded_retention)
    assert r.pttl(keys.task(other.id)) == -1


def test_one_call_acks_many_and_refuses_only_the_stale(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app.enqueue_many([app.message("job", i) for i in range(3)])
    first, stale, last = claim(broker, 3)
    lose_lease(broker, stale, "reclaimed")
    before = dump(r, prefix)
    done = [(first, b"1"), (stale, b"2"), (last, b"3")]
    assert broker.execute([broker.ops.ack(done)]) == [[1, 0, 1]]
    after = dump(r, prefix)
    assert after[keys.task(stale.id)] == before[keys.task(stale.id)]
    assert stale.id in after[keys.active]
    for task, result in ((first, "1"), (last, "3")):
        assert task.id not in after[keys.active]
        assert after[keys.task(task.id)]["state"] == "succeeded"
        assert after[keys.task(task.id)]["result"] == result


def test_ack_refuses_a_stale_token(
    stale: StaleClaim, unchanged: Unchanged, broker: SyncBroker
) -> None:
    # a repeat of an ack already written (a client retry after a lost reply) answers 1,
    # as the first call did; either way nothing is written
    repeat = stale.how == "completed"
    with unchanged():
        reply = broker.execute([broker.ops.ack([(stale.task, b'"late"')])])
    assert reply == [[1 if repeat else 0]]


def test_a_succeeded_task_leaves_no_key_after_its_retention(
    settings: Settings, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app = Conveyor(settings=settings.replace(succeeded_retention=0.2))
    try:
        handle = app.enqueue("job", 1)
        broker = app.sync_broker()
        task = claim_one(broker)
        assert task_keys(r, prefix, handle.id) == [keys.active, keys.task(handle.id)]
        assert broker.execute([broker.ops.ack([(task, b"null")])]) == [[1]]
        assert task_keys(r, prefix, handle.id) == [keys.task(handle.id)]
        wait_until_sync(
            lambda: task_keys(r, prefix, handle.id) == [], timeout=5, what="the record to expire"
        )
        # left: the queue registry, and the wake-up token no worker consumed here
        assert dump(r, prefix) == {f"{prefix}:queues": ["default"], keys.signal: ["1"]}
    finally:
        app.close()


def test_one_call_acks_more_tasks_than_a_lua_unpack_takes(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    """A busy worker acks every success since its last ack in one call: the leases are
    released in slices, however many there are."""
    count = 2 * MAX_CLAIM_BATCH + 500
    app.enqueue_many([app.message("job", i) for i in range(count)])
    tasks = [t for _ in range(3) for t in claim(broker, MAX_CLAIM_BATCH)]
    assert len(tasks) == count and r.zcard(keys.active) == count
    assert broker.execute([broker.ops.ack([(t, b"1") for t in tasks])]) == [[1] * count]
    assert r.exists(keys.active) == 0
    assert {r.hget(keys.task(t.id), "state") for t in tasks} == {b"succeeded"}
