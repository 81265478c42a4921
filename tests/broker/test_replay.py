"""replay.lua: dead letters return to pending with fresh retry and crash budgets."""

from __future__ import annotations

import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.ids import new_task_id
from conveyor.settings import Settings
from tests.broker.conftest import Run, TaskIn
from tests.broker.seed import claim_one
from tests.support.keyspace import dump, entry, moved


def test_a_dead_letter_becomes_pending_again(
    task_in: TaskIn, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task_id = task_in("dead", priority=3)
    assert r.pttl(keys.task(task_id)) > 0
    ran = run(broker.ops.replay_dead("default", [task_id]))
    assert ran.reply == [task_id]
    expected = moved(
        ran.before, keys, task_id, source="dead", target="pending", score=ran.window.pending(3),
        wake=True, drop=["reason", "finished_at"], state="pending", failures="0", crashes="0",
    )  # fmt: skip
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
    app: Conveyor, task_in: TaskIn, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    dead = task_in("dead")
    pending = app.enqueue("job").id
    unknown = new_task_id("default")
    before = dump(r, prefix)
    replayed = broker.run(broker.ops.replay_dead("default", [pending, unknown, dead]))
    assert replayed == [dead]
    state = dump(r, prefix)
    assert state[keys.task(pending)] == before[keys.task(pending)]
    assert state[keys.ready] == [entry(pending)]  # new
    assert list(state[keys.pending]) == [dead]  # back in pending: ahead of the new
    assert keys.task(unknown) not in state and keys.dead not in state


def test_a_dead_letter_whose_record_expired_is_dropped(
    broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    orphan = new_task_id("default")
    r.zadd(keys.dead, {orphan: 1})
    assert broker.run(broker.ops.replay_dead("default", [orphan])) == []
    assert dump(r, prefix) == {}  # no record recreated, no worker woken
