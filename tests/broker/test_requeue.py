"""requeue.lua: a claimed task goes back to pending now; a crash counts toward the limit."""

from __future__ import annotations

import copy

import orjson
import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.settings import Settings
from tests.broker.seed import (
    STALE_WAYS,
    Stale,
    assert_ttl,
    assert_ttls_kept,
    claim_one,
    clock,
    lose_lease,
    ttls,
)
from tests.support.keyspace import dump


def test_an_unfinished_task_goes_back_to_pending_without_a_crash(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app.enqueue("job", priority=7)
    task = claim_one(broker)
    r.delete(keys.signal)
    before = dump(r, prefix)
    with clock(r) as window:
        assert broker.execute([broker.ops.requeue(task, crashed=False)]) == [b"pending"]
    expected = copy.deepcopy(before)
    del expected[keys.active]
    expected[keys.pending] = {task.id: window.pending(7)}
    expected[keys.task(task.id)]["state"] = "pending"
    expected[keys.signal] = ["1"]
    assert dump(r, prefix) == expected  # no crash counted, token and attempts kept
    assert r.pttl(keys.task(task.id)) == -1


def test_a_crash_is_counted_and_the_task_goes_back_to_pending(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    r.delete(keys.signal)
    before = dump(r, prefix)
    with clock(r) as window:
        assert broker.execute([broker.ops.requeue(task, crashed=True)]) == [b"pending"]
    expected = copy.deepcopy(before)
    del expected[keys.active]
    expected[keys.pending] = {task.id: window.pending(0)}
    expected[keys.task(task.id)] |= {"state": "pending", "crashes": "1"}
    expected[keys.signal] = ["1"]
    assert dump(r, prefix) == expected


def test_the_last_allowed_crash_makes_a_dead_letter(
    app: Conveyor,
    broker: SyncBroker,
    settings: Settings,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
) -> None:
    app.enqueue("poison")
    outcomes = []
    for attempt in range(1, settings.max_crashes + 1):
        task = claim_one(broker, f"w{attempt}")
        r.delete(keys.signal)
        before = dump(r, prefix)
        with clock(r) as window:
            (outcome,) = broker.execute([broker.ops.requeue(task, crashed=True)])
        outcomes.append(outcome)
    assert outcomes == [b"pending"] * (settings.max_crashes - 1) + [b"dead"]
    state = dump(r, prefix)
    record = state[keys.task(task.id)]
    error = orjson.loads(record.pop("error"))
    died = int(record["finished_at"])
    assert died == window.now
    expected = copy.deepcopy(before)
    del expected[keys.active]
    expected[keys.dead] = {task.id: died}
    expected[keys.task(task.id)] |= {
        "state": "dead",
        "reason": "worker lost",
        "crashes": str(settings.max_crashes),
        "finished_at": str(died),
    }
    assert state == expected  # not pending, and no worker woken for it
    last = f"w{settings.max_crashes}"
    assert error == {
        "type": "WorkerLostError",
        "message": f"the process running it died {settings.max_crashes} times; last worker {last}",
    }
    assert_ttl(r, keys.task(task.id), settings.dead_retention)


@pytest.mark.parametrize("crashed", [False, True], ids=["stopping", "crashed"])
@pytest.mark.parametrize("how", STALE_WAYS)
def test_requeue_refuses_a_stale_token(
    how: Stale, crashed: bool, app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    lose_lease(broker, task, how)
    before, expiries = dump(r, prefix), ttls(r, prefix)
    assert broker.execute([broker.ops.requeue(task, crashed=crashed)]) == [b""]
    assert dump(r, prefix) == before  # in particular, no crash is counted
    assert_ttls_kept(expiries, ttls(r, prefix))


def test_a_corrupt_priority_loses_no_task(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    r.hset(keys.task(task.id), "priority", "high")
    with clock(r) as window:  # read as priority 0, as promote_due.lua and replay.lua do
        assert broker.execute([broker.ops.requeue(task, crashed=False)]) == [b"pending"]
    state = dump(r, prefix)
    assert state[keys.pending] == {task.id: window.pending(0)}
    assert keys.active not in state and state[keys.task(task.id)]["state"] == "pending"
