"""delete_dead.lua: delete the given dead letters and their records, and nothing else."""

from __future__ import annotations

import copy

import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.ids import new_task_id
from tests.broker.seed import claim, redis_ms, seed_dead
from tests.support.keyspace import dump


def test_deletes_the_given_dead_letters_with_their_records(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app.enqueue_many([app.message("job", i) for i in range(3)])
    tasks = claim(broker, 3)
    calls = [broker.ops.dead_letter(t, "error", b"{}") for t in tasks]
    assert broker.execute(calls) == [1, 1, 1]
    first, second, kept = (t.id for t in tasks)
    live = app.enqueue("job").id
    before = dump(r, prefix)
    ids = [first, live, second, new_task_id("default")]
    assert broker.run(broker.ops.delete_dead("default", ids)) == 2
    expected = copy.deepcopy(before)
    for task_id in (first, second):
        del expected[keys.dead][task_id]
        del expected[keys.task(task_id)]
    assert dump(r, prefix) == expected  # the live task and the unlisted dead letter stay
    assert list(expected[keys.dead]) == [kept] and keys.task(live) in expected


def test_a_dead_letter_without_its_record_is_deleted(
    broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    (orphan,) = seed_dead(r, keys, [redis_ms(r)])
    r.delete(keys.task(orphan))
    assert broker.run(broker.ops.delete_dead("default", [orphan])) == 1
    assert dump(r, prefix) == {}


def test_only_the_given_batch_is_deleted(
    broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    now = redis_ms(r)
    ids = seed_dead(r, keys, [now - 10 + i for i in range(10)])
    assert broker.run(broker.ops.delete_dead("default", ids[:4])) == 4
    assert broker.run(broker.ops.delete_dead("default", ids[:4])) == 0
    state = dump(r, prefix)
    assert list(state[keys.dead]) == ids[4:]
    assert sorted(k for k in state if k != keys.dead) == sorted(keys.task(i) for i in ids[4:])
