"""recover.lua: expired leases go back to pending, once each; a poison pill ends dead."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.ops import MAINTENANCE_BATCH
from conveyor.broker.records import ClaimedTask
from conveyor.broker.sync_broker import SyncBroker
from tests.broker.conftest import Buried, Run, Unchanged, lost_error
from tests.broker.seed import (
    SHORT_LEASE,
    claim,
    claim_one,
    clock,
    wait_leases_expired,
)
from tests.support.keyspace import archived, dump, moved, pop_history


def test_only_expired_leases_are_recovered(
    app: Conveyor,
    broker: SyncBroker,
    run: Run,
    short_lease: Conveyor,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
) -> None:
    expiring = short_lease.enqueue("job", "expiring", priority=4)
    claim_one(short_lease.sync_broker(), "w1")
    held = app.enqueue("job", "held")
    claim_one(broker, "w2")
    wait_leases_expired(r, keys, expiring.id)
    ran = run(broker.ops.recover("default"))
    assert ran.reply == [(expiring.id, "pending")]
    expected = moved(
        ran.before, keys, expiring.id, source="active", target="pending",
        score=ran.window.pending(4), wake=True, state="pending", crashes="1",
    )  # fmt: skip
    state = dump(r, prefix)
    key = keys.task(expiring.id)
    lost = archived(ran.before, key, ran.window.now, "crashed", lost_error("its worker was lost"))
    assert pop_history(state, key) == {1: lost}
    assert state == expected
    assert list(expected[keys.active]) == [held.id]


def test_a_task_whose_workers_are_lost_too_often_is_dead(
    app: Conveyor,
    broker_with: Callable[..., SyncBroker],
    run: Run,
    r: redis.Redis,
    keys: QueueKeys,
    buried: Buried,
) -> None:
    broker = broker_with(lease_timeout=SHORT_LEASE, max_crashes=2)
    app.enqueue("poison")
    task = claim_one(broker, "w1")
    wait_leases_expired(r, keys)
    assert broker.run(broker.ops.recover("default")) == [(task.id, "pending")]
    assert r.hget(keys.task(task.id), "crashes") == b"1"
    claim_one(broker, "w2")
    wait_leases_expired(r, keys)
    ran = run(broker.ops.recover("default"), on=broker)
    assert ran.reply == [(task.id, "dead")]
    buried(ran, task.id, 2, "its worker was lost 2 times; last worker w2")


def test_a_lease_whose_record_is_gone_is_dropped(
    broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    r.zadd(keys.active, {"default:GONE": 1})
    assert broker.run(broker.ops.recover("default")) == [("default:GONE", "gone")]
    assert dump(r, prefix) == {}


def test_nothing_expired_changes_nothing(
    app: Conveyor, broker: SyncBroker, unchanged: Unchanged
) -> None:
    app.enqueue("job")
    claim_one(broker)
    with unchanged():
        assert broker.run(broker.ops.recover("default")) == []


def test_concurrent_recoverers_recover_each_task_exactly_once(
    short_lease: Conveyor, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    count, threads = MAINTENANCE_BATCH + 100, 4
    handles = short_lease.enqueue_many([short_lease.message("job", i) for i in range(count)])
    broker = short_lease.sync_broker()
    assert len(claim(broker, count)) == count
    wait_leases_expired(r, keys)
    start = threading.Barrier(threads)

    def recover_all() -> list[list[tuple[str, str]]]:
        start.wait()
        replies = []
        while reply := broker.run(broker.ops.recover("default")):
            replies.append(reply)
        return replies

    with ThreadPoolExecutor(threads) as pool:
        jobs = [pool.submit(recover_all) for _ in range(threads)]
    replies = [reply for job in jobs for reply in job.result()]
    assert all(len(reply) <= MAINTENANCE_BATCH for reply in replies)
    outcomes = [pair for reply in replies for pair in reply]
    assert sorted(outcomes) == sorted((h.id, "pending") for h in handles)
    state = dump(r, prefix)
    assert keys.active not in state
    assert sorted(state[keys.pending]) == sorted(h.id for h in handles)
    assert {state[keys.task(h.id)]["crashes"] for h in handles} == {"1"}


def test_a_corrupt_priority_loses_no_task(
    expired: ClaimedTask, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task = expired
    r.hset(keys.task(task.id), "priority", "high")
    with clock(r) as window:  # read as priority 0, as promote_due.lua and replay.lua do
        assert broker.run(broker.ops.recover("default")) == [(task.id, "pending")]
    state = dump(r, prefix)
    assert state[keys.pending] == {task.id: window.pending(0)}
    assert keys.active not in state and state[keys.task(task.id)]["state"] == "pending"
