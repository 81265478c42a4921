"""claim.lua: lease pending tasks in order, fence them with a token, keep corrupt ones aside."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.ids import id_millis
from conveyor.model import to_millis
from conveyor.settings import MAX_CLAIM_BATCH, Settings
from tests.broker.conftest import Ran, Run, Unchanged
from tests.broker.seed import claim, claim_one
from tests.support.keyspace import dump, entry, moved

#: The lease of the test settings (tests/conftest.py), in milliseconds.
LEASE_MS = 2000


def leased(expected: dict[str, Any], keys: QueueKeys, task_id: str, ran: Ran) -> dict[str, Any]:
    """`expected` with `task_id` leased to w1 for the test settings' 2 s, its first attempt."""
    return moved(
        expected, keys, task_id, source="pending", target="active", score=ran.window.at(LEASE_MS),
        state="active", worker="w1", started_at=ran.window.now, token="1", attempts="1",
    )  # fmt: skip


def claimed_ids(ran: Ran) -> list[str]:
    """The ids a claim leased."""
    return [t.id for t in ran.reply.tasks]


def test_leases_up_to_n_tasks_in_priority_then_fifo_order(
    app: Conveyor,
    broker: SyncBroker,
    run: Run,
    settings: Settings,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
) -> None:
    handles = app.enqueue_many(
        [
            app.message("job", i, priority=p, max_retries=4, timeout=2.5)
            for i, p in enumerate([0, 5, 0, 5, -1])
        ]
    )
    ran = run(broker.ops.claim("default", 3, "w1"))  # its token taken by this worker's BLPOP
    tasks = ran.reply.tasks
    assert claimed_ids(ran) == [handles[1].id, handles[3].id, handles[0].id]
    assert to_millis(settings.lease_timeout) == LEASE_MS
    expected = ran.before
    for task in tasks:
        expected = leased(expected, keys, task.id, ran)
    expected[keys.signal] = ["1"]  # work remains: the next idle worker is woken
    assert dump(r, prefix) == expected

    first = tasks[0]
    assert (first.queue, first.name, first.token, first.attempts) == ("default", "job", 1, 1)
    assert (first.args, first.kwargs, first.failures, first.crashes) == (b"[1]", None, 0, 0)
    assert (first.max_retries, first.timeout, first.due_at_ms) == (4, 2.5, None)
    assert first.enqueued_at_ms == id_millis(first.id)  # its id holds it
    assert first.claimed_at_ms == ran.window.now


def test_the_last_tasks_are_claimed_without_a_wake_up(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    handles = app.enqueue_many([app.message("job", i) for i in range(2)])
    r.delete(keys.signal)
    tasks = claim(broker, 10, "w1")
    assert [t.id for t in tasks] == [h.id for h in handles]
    state = dump(r, prefix)
    assert keys.ready not in state and keys.signal not in state
    assert list(state[keys.active]) == [h.id for h in handles]


def test_each_claim_increments_the_token_and_the_attempts(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue("job")
    first = claim_one(broker, "w1")
    assert broker.execute([broker.ops.requeue(first, crashed=False)]) == [b"pending"]
    second = claim_one(broker, "w2")
    assert (first.token, first.attempts, second.token, second.attempts) == (1, 1, 2, 2)
    assert r.hmget(keys.task(second.id), "token", "attempts", "worker") == [b"2", b"2", b"w2"]


def test_a_paused_queue_leases_nothing(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys, unchanged: Unchanged
) -> None:
    handles = app.enqueue_many([app.message("job", i) for i in range(2)])
    r.set(keys.paused, "1")
    with unchanged():
        result = broker.run(broker.ops.claim("default", 10, "w1"))
    assert (result.tasks, result.suspects_waiting) == ([], False)
    r.delete(keys.paused)
    assert [t.id for t in claim(broker, 10)] == [h.id for h in handles]


def test_an_index_entry_whose_record_is_gone_is_dropped(
    app: Conveyor, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    gone, kept = app.enqueue_many([app.message("job", i) for i in range(2)])
    r.delete(keys.task(gone.id))
    ran = run(broker.ops.claim("default", 2, "w1"))
    assert claimed_ids(ran) == [kept.id]
    expected = leased(ran.before, keys, kept.id, ran)
    del expected[keys.ready]  # the entry of the record gone
    assert dump(r, prefix) == expected  # no dead letter, no record recreated


def test_corrupt_records_go_to_the_dead_set_and_the_rest_is_claimed(
    app: Conveyor, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    not_a_hash, bad_token, healthy = app.enqueue_many([app.message("job", i) for i in range(3)])
    r.delete(keys.task(not_a_hash.id))
    r.set(keys.task(not_a_hash.id), "garbage")
    r.hset(keys.task(bad_token.id), "token", "not-a-number")
    ran = run(broker.ops.claim("default", 3, "w1"))
    assert claimed_ids(ran) == [healthy.id]
    now = ran.window.now
    expected = moved(
        leased(ran.before, keys, healthy.id, ran), keys, bad_token.id, source="pending",
        target="dead", score=now, state="dead", reason="corrupt record", finished_at=now,
    )  # fmt: skip
    del expected[keys.ready]  # the entry of the record that is not a hash
    expected[keys.dead][not_a_hash.id] = now  # kept aside as it is, for inspection
    assert dump(r, prefix) == expected


def test_a_corrupt_attempt_count_loses_no_task(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    first, corrupt, last = app.enqueue_many([app.message("job", i) for i in range(3)])
    r.hset(keys.task(corrupt.id), "attempts", "many")
    tasks = claim(broker, 3)  # one corrupt record must not fail the whole claim
    assert [t.id for t in tasks] == [first.id, last.id]
    state = dump(r, prefix)
    assert list(state[keys.active]) == [first.id, last.id]
    assert list(state[keys.dead]) == [corrupt.id]  # kept for inspection, like a bad token
    assert state[keys.task(corrupt.id)]["state"] == "dead"
    assert state[keys.task(corrupt.id)]["reason"] == "corrupt record"


def crash_once(app: Conveyor, broker: SyncBroker) -> str:
    """Enqueue a task whose process then died once: a suspect back in pending."""
    app.enqueue("poison")
    task = claim_one(broker, "w0")
    assert broker.execute([broker.ops.requeue(task, crashed=True)]) == [b"pending"]
    return task.id


def test_an_idle_worker_takes_a_suspect_alone(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    suspect = crash_once(app, broker)
    others = app.enqueue_many([app.message("job", i) for i in range(2)])
    r.delete(keys.signal)
    result = broker.run(broker.ops.claim("default", 3, "w1", idle=True))
    assert [(t.id, t.crashes) for t in result.tasks] == [(suspect, 1)]
    assert not result.suspects_waiting
    state = dump(r, prefix)
    assert list(state[keys.active]) == [suspect]
    assert state[keys.ready] == [entry(h.id) for h in others]
    assert state[keys.signal] == ["1"]


def test_a_busy_worker_skips_a_suspect_and_says_so(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    suspect = crash_once(app, broker)
    others = app.enqueue_many([app.message("job", i) for i in range(2)])
    result = broker.run(broker.ops.claim("default", 3, "w1", idle=False))
    assert [t.id for t in result.tasks] == [h.id for h in others]
    assert result.suspects_waiting
    state = dump(r, prefix)
    assert list(state[keys.pending]) == [suspect]
    assert state[keys.task(suspect)]["state"] == "pending"
    assert state[keys.task(suspect)]["token"] == "1"  # not claimed, not fenced again


def test_an_idle_worker_that_took_a_task_leaves_a_suspect_for_later(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    suspect = crash_once(app, broker)
    urgent = app.enqueue("job", "urgent", priority=10)  # ahead of the suspect
    after = app.enqueue("job", "after")  # behind it
    result = broker.run(broker.ops.claim("default", 3, "w1", idle=True))
    assert [t.id for t in result.tasks] == [urgent.id, after.id]
    assert result.suspects_waiting
    state = dump(r, prefix)
    assert list(state[keys.pending]) == [suspect]
    assert list(state[keys.active]) == [urgent.id, after.id]


def test_a_retried_claim_gets_the_same_tasks_back(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str
) -> None:
    """The client retries a call once when its reply is lost: the retry must not orphan
    the tasks the first call leased, nor lease more."""
    handles = app.enqueue_many([app.message("job", i) for i in range(5)])
    op = broker.ops.claim("default", 2, "w1")
    first = broker.run(op).tasks
    again = broker.run(op).tasks  # the very same call, as redis-py's retry sends it
    assert [(t.id, t.token, t.attempts) for t in again] == [
        (t.id, t.token, t.attempts) for t in first
    ]
    assert [t.id for t in first] == [h.id for h in handles[:2]]
    requests = {k: v for k, v in dump(r, prefix, claim_requests=True).items() if ":claim:" in k}
    assert list(requests.values()) == [[h.id for h in handles[:2]]]
    assert all(0 < r.pttl(k) <= 2000 for k in requests)  # kept for one lease only
    # a new call claims the next tasks
    assert [t.id for t in broker.run(broker.ops.claim("default", 2, "w1")).tasks] == [
        h.id for h in handles[2:4]
    ]


def test_the_largest_batch_is_leased_in_one_call(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue_many([app.message("job", i) for i in range(MAX_CLAIM_BATCH + 5)])
    tasks = claim(broker, MAX_CLAIM_BATCH)
    assert len({t.id for t in tasks}) == MAX_CLAIM_BATCH
    assert r.zcard(keys.active) == MAX_CLAIM_BATCH
    assert r.llen(keys.ready) == 5


def test_a_claim_of_no_tasks_or_too_many_is_refused(broker: SyncBroker) -> None:
    for count in (0, MAX_CLAIM_BATCH + 1):
        with pytest.raises(ValueError, match="a claim takes"):
            broker.ops.claim("default", count, "w1")


def test_tasks_back_in_pending_take_turns_with_new_ones_of_their_priority(
    app: Conveyor, broker: SyncBroker
) -> None:
    back = [h.id for h in app.enqueue_many([app.message("job", i) for i in range(3)])]
    for task in claim(broker, 3):
        assert broker.execute([broker.ops.requeue(task, crashed=False)]) == [b"pending"]
    new = [h.id for h in app.enqueue_many([app.message("job", i) for i in range(3, 6)])]
    high = app.enqueue("job", "urgent", priority=5).id
    taken = [t.id for t in claim(broker, 7)]
    assert taken[0] == high  # a higher priority first
    rest = taken[1:]
    assert sorted(rest) == sorted(back + new)
    # then one back in pending, one new, ... (which starts follows the ms)
    assert [i in back for i in rest] in ([True, False] * 3, [False, True] * 3)
    assert [i for i in rest if i in back] == back and [i for i in rest if i in new] == new


def test_a_claim_hands_the_worker_the_checkpoint_workflow_step_and_trace(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    plain, marked = app.enqueue_many([app.message("job", 1), app.message("job", 2)])
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r.hset(
        keys.task(marked.id),
        mapping={
            "checkpoint": '{"page":7}',
            "workflow": "01JD0000000000000000000009:3",
            "trace": trace,
        },
    )
    tasks = {t.id: t for t in claim(broker, 2)}
    assert (tasks[plain.id].checkpoint, tasks[plain.id].workflow, tasks[plain.id].trace) == (
        None, None, None,
    )  # fmt: skip
    assert tasks[marked.id].checkpoint == b'{"page":7}'
    assert tasks[marked.id].workflow == "01JD0000000000000000000009:3"
    assert tasks[marked.id].trace == trace
