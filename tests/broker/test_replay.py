"""replay.lua: dead letters return to pending with fresh retry and crash budgets."""

from __future__ import annotations

import copy

import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.ids import new_task_id
from conveyor.settings import Settings
from tests.broker.seed import claim_one, clock
from tests.support.keyspace import dump

ERROR = b'{"type":"ValueError","message":"broken","traceback":""}'


def dead_letter(app: Conveyor, broker: SyncBroker, priority: int = 0) -> str:
    """A task that failed its last attempt and was kept as a dead letter."""
    app.enqueue("job", priority=priority)
    task = claim_one(broker)
    assert broker.execute([broker.ops.dead_letter(task, "error", ERROR)]) == [1]
    return task.id


def test_a_dead_letter_becomes_pending_again(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task_id = dead_letter(app, broker, priority=3)
    r.delete(keys.signal)
    before = dump(r, prefix)
    assert r.pttl(keys.task(task_id)) > 0
    with clock(r) as window:
        assert broker.run(broker.ops.replay_dead("default", [task_id])) == [task_id]
    expected = copy.deepcopy(before)
    del expected[keys.dead]
    expected[keys.pending] = {task_id: window.pending(3)}
    record = expected[keys.task(task_id)]
    del record["reason"], record["finished_at"]
    record |= {"state": "pending", "failures": "0", "crashes": "0"}
    expected[keys.signal] = ["1"]
    assert dump(r, prefix) == expected  # the last error stays for reference
    assert r.pttl(keys.task(task_id)) == -1


def test_a_poison_pill_replayed_gets_its_crash_budget_back(
    app: Conveyor, broker: SyncBroker, settings: Settings, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue("poison")
    for _ in range(settings.max_crashes):
        task = claim_one(broker)
        (outcome,) = broker.execute([broker.ops.requeue(task, crashed=True)])
    assert outcome == b"dead"
    assert broker.run(broker.ops.replay_dead("default", [task.id])) == [task.id]
    assert r.hmget(keys.task(task.id), "crashes", "state") == [b"0", b"pending"]
    again = claim_one(broker)  # no longer a suspect, and still fenced by a growing token
    assert (again.id, again.crashes, again.token) == (task.id, 0, settings.max_crashes + 1)


def test_ids_that_are_not_dead_letters_are_skipped(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    dead = dead_letter(app, broker)
    pending = app.enqueue("job").id
    unknown = new_task_id("default")
    before = dump(r, prefix)
    replayed = broker.run(broker.ops.replay_dead("default", [pending, unknown, dead]))
    assert replayed == [dead]
    state = dump(r, prefix)
    assert state[keys.task(pending)] == before[keys.task(pending)]
    assert list(state[keys.pending]) == [pending, dead]
    assert keys.task(unknown) not in state and keys.dead not in state


def test_a_dead_letter_whose_record_expired_is_dropped(
    broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    orphan = new_task_id("default")
    r.zadd(keys.dead, {orphan: 1})
    assert broker.run(broker.ops.replay_dead("default", [orphan])) == []
    assert dump(r, prefix) == {}  # no record recreated, no worker woken
