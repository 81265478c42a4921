"""release_worker.lua and lead.lua: the reaper takes back exactly a dead worker's leases."""

from __future__ import annotations

from collections.abc import Callable

import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.ops import RELEASE_WINDOW
from conveyor.broker.sync_broker import SyncBroker
from tests.broker.conftest import Buried, Run, Unchanged, lost_error
from tests.broker.seed import claim, claim_one
from tests.support.keyspace import archived, dump, moved, pop_history


def test_only_the_dead_workers_leases_go_back_to_pending_at_once(
    app: Conveyor, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    dead = app.enqueue("job", "dead", priority=3)
    claim_one(broker, "w1")
    alive = app.enqueue("job", "alive")
    claim_one(broker, "w2")
    ran = run(broker.ops.release_worker("default", "w1"))
    # long before its lease (30 s) runs out
    assert ran.reply == (-1, [(dead.id, "pending")])
    expected = moved(
        ran.before, keys, dead.id, source="active", target="pending",
        score=ran.window.pending(3), wake=True, state="pending", crashes="1",
    )  # fmt: skip
    state = dump(r, prefix)
    key = keys.task(dead.id)
    lost = archived(ran.before, key, ran.window.now, "crashed", lost_error("its worker was lost"))
    assert pop_history(state, key) == {1: lost}
    assert state == expected
    assert list(expected[keys.active]) == [alive.id]


def test_a_worker_with_no_lease_changes_nothing(
    app: Conveyor, broker: SyncBroker, unchanged: Unchanged
) -> None:
    app.enqueue("job")
    claim_one(broker, "w2")
    with unchanged():
        assert broker.run(broker.ops.release_worker("default", "w1")) == (-1, [])


def test_a_task_whose_workers_die_too_often_is_dead(
    app: Conveyor,
    broker_with: Callable[..., SyncBroker],
    run: Run,
    buried: Buried,
) -> None:
    broker = broker_with(max_crashes=2)
    app.enqueue("poison")
    task = claim_one(broker, "w1")
    assert broker.run(broker.ops.release_worker("default", "w1")) == (-1, [(task.id, "pending")])
    claim_one(broker, "w2")
    ran = run(broker.ops.release_worker("default", "w2"), on=broker)
    assert ran.reply == (-1, [(task.id, "dead")])
    buried(ran, task.id, 2, "its worker was lost 2 times; last worker w2")


def test_windows_read_every_lease_even_as_released_ones_leave_the_set(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    """Interleaved leases of two workers over more than two windows: the second window
    starts where the first left off, counted after the first's leases left the set."""
    count = RELEASE_WINDOW * 2 + 10
    app.enqueue_many([app.message("job", i) for i in range(count)])
    mine: list[str] = []
    theirs: list[str] = []
    while len(mine) + len(theirs) < count:
        mine += [t.id for t in claim(broker, 100, "w1")]
        theirs += [t.id for t in claim(broker, 100, "w2")]
    windows, released, start = 0, [], 0
    while start >= 0:
        start, pairs = broker.run(broker.ops.release_worker("default", "w1", start))
        released += pairs
        windows += 1
    assert windows >= 2
    assert sorted(released) == sorted((task_id, "pending") for task_id in mine)
    state = dump(r, prefix)
    assert sorted(state[keys.active]) == sorted(theirs)
    assert sorted(state[keys.pending]) == sorted(mine)


def test_a_lease_whose_record_is_gone_is_left_to_recover(
    broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    r.zadd(keys.active, {"default:GONE": 1})
    assert broker.run(broker.ops.release_worker("default", "w1")) == (-1, [])
    assert broker.run(broker.ops.recover("default")) == [("default:GONE", "gone")]
    assert dump(r, prefix) == {}


def test_one_worker_at_a_time_has_the_reapers_role(
    broker: SyncBroker, r: redis.Redis, prefix: str
) -> None:
    ops = broker.ops
    assert broker.run(ops.lead("w1", 1.0)) is True
    assert broker.run(ops.lead("w2", 1.0)) is False
    assert broker.run(ops.lead("w1", 5.0)) is True  # renewed, longer
    assert 4000 < r.pttl(ops.keys.reaper) <= 5000
    assert broker.run(ops.lead("w2", 0)) is False  # not its role to give up
    assert r.get(ops.keys.reaper) == b"w1"
    assert broker.run(ops.lead("w1", 0)) is True
    assert dump(r, prefix) == {}
    assert broker.run(ops.lead("w2", 1.0)) is True
