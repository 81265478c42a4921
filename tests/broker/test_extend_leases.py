"""extend_leases.lua: renew the leases still held under their token; report the lost ones."""

from __future__ import annotations

import copy

import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.ops import Renewal
from conveyor.broker.records import ClaimedTask
from conveyor.broker.sync_broker import SyncBroker
from conveyor.model import to_millis
from tests.broker.conftest import Run, Unchanged
from tests.broker.seed import SHORT_LEASE, claim, claim_one, clock, lose_lease
from tests.support.keyspace import dump


def test_renews_held_leases_and_returns_the_lost_ones(
    app: Conveyor, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app.enqueue_many([app.message("job", i) for i in range(4)])
    held, taken_over, given_back, finished = claim(broker, 4, "w1")
    lose_lease(broker, taken_over, "reclaimed")  # w2 holds it now, under token 2
    lose_lease(broker, given_back, "released")  # back in pending, token unchanged
    lose_lease(broker, finished, "completed")  # acked already
    r.zadd(keys.active, {held.id: 1}, xx=True)  # about to expire: the renewal must show
    pairs = [(t.id, t.token) for t in (held, taken_over, given_back, finished)]
    ran = run(broker.ops.extend_leases("default", [*pairs, ("default:UNKNOWN", 1)]))
    assert ran.reply == Renewal([taken_over.id, given_back.id, finished.id, "default:UNKNOWN"], [])
    expected = copy.deepcopy(ran.before)
    expected[keys.active][held.id] = ran.window.at(2000)
    assert dump(r, prefix) == expected  # w2's lease is untouched, nothing is re-added


def test_a_recovered_lease_is_lost_and_not_renewed(
    expired: ClaimedTask, broker: SyncBroker, r: redis.Redis, keys: QueueKeys, unchanged: Unchanged
) -> None:
    task = expired
    assert broker.run(broker.ops.recover("default")) == [(task.id, "pending")]
    assert not r.exists(keys.active)
    with unchanged():
        lost = broker.run(broker.ops.extend_leases("default", [(task.id, task.token)]))
    assert lost == Renewal([task.id], [])


def test_an_expired_lease_not_yet_recovered_is_renewed(
    short_lease: Conveyor, expired: ClaimedTask, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task, broker = expired, short_lease.sync_broker()
    with clock(r) as window:
        lost = broker.run(broker.ops.extend_leases("default", [(task.id, task.token)]))
    assert lost == Renewal([], [])
    assert dump(r, prefix)[keys.active] == {task.id: window.at(to_millis(SHORT_LEASE))}


def test_nothing_held_renews_nothing(
    app: Conveyor, broker: SyncBroker, unchanged: Unchanged
) -> None:
    app.enqueue("job")
    claim_one(broker)
    with unchanged():
        assert broker.run(broker.ops.extend_leases("default", [])) == Renewal([], [])
