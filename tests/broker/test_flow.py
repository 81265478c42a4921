"""Flow control in the scripts: unique keys, concurrency slots, rate limits, fair groups.

Each test drives the real scripts (enqueue, claim, ack, retry, dead_letter, recover,
requeue, cancel, delete) and reads the flow keys the way broker/keys.py names them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.settings import Settings
from tests.broker.seed import claim, claim_one, redis_ms, wait_due, wait_leases_expired

ERROR = b'{"type":"ValueError","message":"broken","traceback":""}'


def ack(broker: SyncBroker, *tasks: Any) -> None:
    assert broker.execute([broker.ops.ack([(t, b"null") for t in tasks])]) == [[1] * len(tasks)]


def state(r: redis.Redis, keys: QueueKeys, task_id: str) -> str | None:
    value: Any = r.hget(keys.task(task_id), "state")
    return None if value is None else str(value.decode())


def texts(values: Any) -> list[str]:
    """Members of a Redis reply (LRANGE, SMEMBERS, ZRANGE, KEYS) as text."""
    return [str(v.decode()) for v in values]


def promote(broker: SyncBroker) -> int:
    return broker.run(broker.ops.promote_due("default"))[0]


# -- unique tasks ------------------------------------------------------------------------


def test_a_unique_task_is_enqueued_once_while_live_and_again_once_it_ends(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    first = app.enqueue("job", 1, unique=True)
    again = app.enqueue("job", 1, unique=True)
    other = app.enqueue("job", 2, unique=True)
    assert again.id == first.id and other.id != first.id
    [lock] = [
        k for k in texts(r.keys(keys.flow_prefix + "unique:*")) if r.get(k) == first.id.encode()
    ]
    assert lock.startswith(keys.unique("job:"))
    assert r.zcard(keys.pending) + r.llen(keys.ready) == 2

    task = claim_one(broker)
    assert app.enqueue("job", 1, unique=True).id == first.id  # active: still live
    ack(broker, task)
    assert r.get(lock) is None
    assert app.enqueue("job", 1, unique=True).id not in (first.id, other.id)


def test_a_unique_key_names_the_task_whatever_its_arguments(app: Conveyor) -> None:
    first = app.enqueue("report", 1, unique=True, unique_key="acct-7")
    assert app.enqueue("report", 99, unique=True, unique_key="acct-7").id == first.id
    # scoped by the task's name: another task may use the same key
    assert app.enqueue("invoice", 1, unique=True, unique_key="acct-7").id != first.id


@pytest.mark.parametrize("ending", ["dead", "failed", "cancel", "delete", "crashes"])
def test_every_way_a_task_ends_releases_its_unique_key(
    ending: str,
    app: Conveyor,
    broker: SyncBroker,
    broker_with: Any,
    r: redis.Redis,
    keys: QueueKeys,
) -> None:
    handle = app.enqueue("job", unique=True)
    lock = keys.unique("job:" + lock_tail(r, keys, handle.id))
    if ending in ("cancel", "delete"):
        if ending == "cancel":
            assert handle.cancel()
        else:
            app.inspector.delete_task(handle.id)
    elif ending == "crashes":
        short = broker_with(lease_timeout=0.05, max_crashes=1)
        claim(short)
        wait_leases_expired(r, keys)
        assert short.run(short.ops.recover("default")) == [(handle.id, "dead")]
    else:
        task = claim_one(broker)
        assert broker.execute([broker.ops.dead_letter(task, "error", ERROR, keep=ending == "dead")])
    assert r.get(lock) is None
    assert app.enqueue("job", unique=True).id != handle.id


def lock_tail(r: redis.Redis, keys: QueueKeys, task_id: str) -> str:
    """The unique key (after the task name) of the lock held by `task_id`."""
    for key in texts(r.keys(keys.flow_prefix + "unique:*")):
        if r.get(key) == task_id.encode():
            return key.rsplit("job:", 1)[1]
    raise AssertionError(f"no lock held by {task_id}")


def test_a_retry_or_a_recovered_crash_keeps_the_unique_key(
    app: Conveyor, broker: SyncBroker, broker_with: Any, r: redis.Redis, keys: QueueKeys
) -> None:
    handle = app.enqueue("job", unique=True)
    task = claim_one(broker)
    assert broker.execute([broker.ops.retry(task, 0.01, ERROR)]) == [1]
    assert app.enqueue("job", unique=True).id == handle.id
    wait_due(r, keys)
    promote(broker)
    short = broker_with(lease_timeout=0.05)
    claim(short)
    wait_leases_expired(r, keys)
    assert short.run(short.ops.recover("default")) == [(handle.id, "pending")]
    assert app.enqueue("job", unique=True).id == handle.id


def test_a_lock_whose_task_is_gone_is_taken_over(
    app: Conveyor, r: redis.Redis, keys: QueueKeys
) -> None:
    handle = app.enqueue("job", unique=True, unique_key="k")
    r.delete(keys.task(handle.id))  # as if its record expired without a release
    fresh = app.enqueue("job", unique=True, unique_key="k")
    assert fresh.id != handle.id and r.get(keys.unique("job:k")) == fresh.id.encode()


def test_replace_gives_a_waiting_task_the_newest_arguments_and_due_time(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    first = app.enqueue("job", 1, unique="replace", unique_key="k")
    second = app.enqueue("job", 2, unique="replace", unique_key="k", delay=30)
    assert second.id == first.id
    assert r.hget(keys.task(first.id), "args") == b"[2]"
    assert state(r, keys, first.id) == "scheduled"
    assert r.zscore(keys.scheduled, first.id) is not None
    assert r.zcard(keys.pending) + r.llen(keys.ready) == 0
    third = app.enqueue("job", kwargs_only=3, unique="replace", unique_key="k")
    assert third.id == first.id and state(r, keys, first.id) == "pending"
    assert r.hget(keys.task(first.id), "args") is None
    assert r.hget(keys.task(first.id), "kwargs") == b'{"kwargs_only":3}'
    assert r.zscore(keys.scheduled, first.id) is None

    running = claim_one(broker)
    newer = app.enqueue("job", 4, unique="replace", unique_key="k")
    assert newer.id != first.id  # it started: a new task takes the key over
    ack(broker, running)  # the old one ending does not release the new one's key
    assert r.get(keys.unique("job:k")) == newer.id.encode()


def test_throttle_holds_its_key_for_the_window_whatever_the_task_does(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    first = app.enqueue("job", unique="throttle", unique_window=0.5)
    ack(broker, claim_one(broker))
    assert app.enqueue("job", unique="throttle", unique_window=0.5).id == first.id
    assert 0 < r.pttl(keys.unique("job:" + lock_tail(r, keys, first.id))) <= 500
    time.sleep(0.55)
    assert app.enqueue("job", unique="throttle", unique_window=0.5).id != first.id


def test_concurrent_producers_store_one_task_per_unique_key(settings: Settings) -> None:
    producers, each = 50, 100
    ids: set[str] = set()
    lock = threading.Lock()

    def produce() -> None:
        app = Conveyor(settings=settings)
        try:
            got = {app.enqueue("job", 1, unique=True).id for _ in range(each)}
        finally:
            app.close()
        with lock:
            ids.update(got)

    threads = [threading.Thread(target=produce) for _ in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 1
    client = redis.Redis.from_url(settings.redis_url)
    keys = QueueKeys(settings.prefix, "default")
    assert client.zcard(keys.pending) + client.llen(keys.ready) == 1
    client.close()


# -- concurrency keys --------------------------------------------------------------------


def test_tasks_over_their_concurrency_wait_aside_until_a_slot_is_released(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    handles = [app.enqueue("job", i, concurrency=2) for i in range(5)]
    tasks = claim(broker, 10)
    assert [t.id for t in tasks] == [h.id for h in handles[:2]]
    waiting = texts(r.lrange(keys.waiting("job"), 0, -1))
    assert waiting == [h.id for h in handles[2:]]
    assert r.zcard(keys.pending) + r.llen(keys.ready) == 0  # nothing left to spin on
    assert set(texts(r.smembers(keys.slots("job")))) == {t.id for t in tasks}
    assert r.smembers(keys.held) == {b"job"} and r.smembers(keys.blocked) == {b"job"}
    assert claim(broker, 10) == []

    ack(broker, tasks[0])
    assert r.zscore(keys.pending, handles[2].id) is not None  # the first waiting one
    [third] = claim(broker, 10)
    assert third.id == handles[2].id
    assert r.scard(keys.slots("job")) == 2
    ack(broker, tasks[1], third)  # two slots released: both waiting tasks come back
    last = claim(broker, 10)
    assert sorted(t.id for t in last) == [h.id for h in handles[3:]]
    ack(broker, *last)
    assert r.exists(keys.slots("job"), keys.waiting("job"), keys.held, keys.blocked) == 0


def test_keys_have_their_own_slots_and_limits(app: Conveyor, broker: SyncBroker) -> None:
    for tenant, limit in (("a", 1), ("a", 1), ("b", 3), ("b", 3), ("b", 3)):
        app.enqueue("job", tenant, concurrency=limit, concurrency_key=tenant)
    assert sorted(t.args or b"" for t in claim(broker, 10)) == [b'["a"]', *[b'["b"]'] * 3]


@pytest.mark.parametrize("leaves", ["retry", "dead", "requeue", "crash", "worker gone"])
def test_every_way_a_task_leaves_its_lease_releases_its_slot(
    leaves: str, app: Conveyor, broker: SyncBroker, broker_with: Any, r: redis.Redis,
    keys: QueueKeys,
) -> None:  # fmt: skip
    holder = app.enqueue("job", 1, concurrency=1)
    waiter = app.enqueue("job", 2, concurrency=1)
    short = broker_with(lease_timeout=0.05)
    [task] = claim(short if leaves == "crash" else broker, 10)
    assert task.id == holder.id and state(r, keys, waiter.id) == "pending"
    calls = {
        "retry": broker.ops.retry(task, 30, ERROR),
        "dead": broker.ops.dead_letter(task, "error", ERROR),
        "requeue": broker.ops.requeue(task, crashed=False),
    }
    if leaves in calls:
        assert broker.execute([calls[leaves]])[0] in (1, b"pending")
    elif leaves == "crash":
        wait_leases_expired(r, keys)
        assert short.run(short.ops.recover("default")) == [(holder.id, "pending")]
    else:
        assert broker.run(broker.ops.release_worker("default", "w1"))[1] == [(holder.id, "pending")]
    assert r.scard(keys.slots("job")) == 0
    claimed = [t.id for t in claim(broker, 10)]
    if leaves in calls and leaves != "requeue":
        assert claimed == [waiter.id]
    else:  # the holder is back in pending too: one of the two runs, the other waits
        # (a suspect, after a crash, runs alone: the other stays pending)
        waiting = texts(r.lrange(keys.waiting("job"), 0, -1))
        waiting += texts(r.zrange(keys.pending, 0, -1))
        assert len(claimed) == 1 and sorted(claimed + waiting) == sorted([holder.id, waiter.id])


def test_a_cancelled_or_deleted_waiting_task_leaves_the_waiting_list(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue("job", 0, concurrency=1)
    cancelled = app.enqueue("job", 1, concurrency=1)
    deleted = app.enqueue("job", 2, concurrency=1)
    [running] = claim(broker, 10)
    assert r.llen(keys.waiting("job")) == 2
    assert cancelled.cancel()
    app.inspector.delete_task(deleted.id)
    assert r.exists(keys.waiting("job"), keys.blocked) == 0
    ack(broker, running)
    assert r.zcard(keys.pending) == 0 and r.exists(keys.slots("job")) == 0


# -- rate limits -------------------------------------------------------------------------


def test_tasks_over_their_rate_reserve_the_next_starts_and_wait_scheduled(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    handles = [app.enqueue("job", i, rate_limit="10/s") for i in range(4)]
    before = redis_ms(r)
    [first] = claim(broker, 10)
    assert first.id == handles[0].id
    starts = [r.zscore(keys.scheduled, h.id) for h in handles[1:]]
    assert all(s is not None for s in starts)
    gaps = [b - a for a, b in zip([before, *starts], starts, strict=False)]  # type: ignore[operator]
    assert all(95 <= g <= 110 for g in gaps[1:]) and 95 <= gaps[0] <= 150
    for h, start in zip(handles[1:], starts, strict=True):
        assert state(r, keys, h.id) == "scheduled"
        assert float(r.hget(keys.task(h.id), "rate_at") or 0) == start
    assert float(r.get(keys.rate("job")) or 0) >= starts[-1] + 100  # type: ignore[operator]

    wait_due(r, keys, handles[1].id)
    promote(broker)
    [second] = claim(broker, 10)  # its reserved start: no new charge
    assert second.id == handles[1].id
    assert r.hget(keys.task(second.id), "rate_at") is None
    assert r.zcard(keys.scheduled) == 2


def test_a_reserved_start_missed_by_more_than_its_slip_is_charged_again(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue("job", 0, rate_limit="20/s")
    late = app.enqueue("job", 1, rate_limit="20/s")
    claim(broker, 10)
    time.sleep(0.2)  # its start (+50 ms) plus the slip (50 ms) went by
    promote(broker)
    bucket_before = float(r.get(keys.rate("job")) or 0)
    assert redis_ms(r) > bucket_before  # the bucket is idle again: the new charge passes
    assert [t.id for t in claim(broker, 10)] == [late.id]
    assert float(r.get(keys.rate("job")) or 0) > bucket_before


def test_a_burst_starts_at_once_then_the_rate_applies(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    for i in range(5):
        app.enqueue("job", i, rate_limit="2/s", rate_limit_burst=3)
    assert len(claim(broker, 10)) == 3
    assert r.zcard(keys.scheduled) == 2


def test_rate_limit_keys_are_shared_by_every_task_naming_them(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue("charge", rate_limit="1/m", rate_limit_key="stripe")
    app.enqueue("refund", rate_limit="1/m", rate_limit_key="stripe")
    assert len(claim(broker, 10)) == 1
    assert r.exists(keys.rate("stripe")) == 1 and r.zcard(keys.scheduled) == 1


# -- fair groups -------------------------------------------------------------------------


def test_claims_go_round_the_groups_so_a_late_small_group_is_not_starved(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue_many([app.message("job", "A", i, group_key="A") for i in range(200)])
    first = claim(broker, 20)
    assert all(b'"A"' in (t.args or b"") for t in first)
    app.enqueue_many([app.message("job", "B", i, group_key="B") for i in range(10)])
    order = [b'"B"' in (t.args or b"") for t in claim(broker, 40)]
    assert sum(order[:20]) == 10  # all of B's within the next 20: one A, one B, ...
    assert r.zscore(keys.groups, "B") is None  # B's last task claimed: its entry trimmed
    assert r.get(keys.virtual_time) is not None


def test_groups_cost_nothing_to_tasks_without_one(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue("job")
    assert r.exists(keys.groups, keys.virtual_time) == 0
    assert r.hget(keys.task(claim_one(broker).id), "flow") is None


# -- the Inspector and fsck --------------------------------------------------------------


def test_the_inspector_reports_slots_waiting_tasks_buckets_and_groups(
    app: Conveyor, broker: SyncBroker
) -> None:
    assert app.inspector.flow("default").to_json() == {
        "queue": "default", "concurrency": [], "rates": [], "groups": 0,
    }  # fmt: skip
    for i in range(3):
        app.enqueue("job", i, concurrency=1, concurrency_key="acct")
    app.enqueue("mail", rate_limit="1/m")
    app.enqueue("mail", rate_limit="1/m")
    app.enqueue("grouped", group_key="tenant-a")
    claim(broker, 10)
    state = app.inspector.flow("default")
    assert [(c.key, c.in_use, c.waiting) for c in state.concurrency] == [("acct", 1, 2)]
    [bucket] = state.rates
    assert bucket.key == "mail" and 59 < bucket.booked_seconds <= 120
    assert state.groups == 0  # its one task was claimed: nothing numbered ahead


def test_fsck_releases_leaked_slots_drops_stale_waiters_and_frees_ended_unique_keys(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    holder = app.enqueue("job", 0, concurrency=1, unique=True)
    waiter = app.enqueue("job", 1, concurrency=1)
    claim(broker, 10)
    assert app.inspector.fsck() == []
    # break it by hand: the holder's record ends without its scripts' releases, and a
    # waiting entry names a task that is no longer pending
    r.zrem(keys.active, holder.id)
    r.hset(keys.task(holder.id), "state", "succeeded")
    r.pexpire(keys.task(holder.id), 60_000)
    r.rpush(keys.waiting("job"), holder.id)
    found = {(f.subject, f.problem) for f in app.inspector.fsck()}
    unique = "flow unique " + lock_tail_of(r, keys, holder.id)
    assert found == {
        (f"flow slot job {holder.id}", "slot held by a task not running"),
        (f"flow waiting job {holder.id}", "waiting task not pending"),
        (unique, "unique key of an ended task"),
    }
    repaired = app.inspector.fsck(True)
    assert {f.action for f in repaired} == {"released", "dropped", "woken"}
    assert r.scard(keys.slots("job")) == 0 and r.zscore(keys.pending, waiter.id) is not None
    assert app.inspector.fsck() == []
    assert [t.id for t in claim(broker, 10)] == [waiter.id]


def lock_tail_of(r: redis.Redis, keys: QueueKeys, task_id: str) -> str:
    """The unique key (after the queue's unique prefix) held by `task_id`."""
    for key in texts(r.keys(keys.unique("*"))):
        if r.get(key) == task_id.encode():
            return key[len(keys.unique("")) :]
    raise AssertionError(f"no lock held by {task_id}")


def test_fsck_leaves_a_pending_task_in_its_waiting_list_alone(
    app: Conveyor, broker: SyncBroker
) -> None:
    app.enqueue("job", 0, concurrency=1)
    app.enqueue("job", 1, concurrency=1)
    claim(broker, 10)
    assert app.inspector.fsck() == []


def test_replace_takes_a_task_waiting_for_a_slot_out_of_its_waiting_list(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue("job", 0, concurrency=1)
    waiting = app.enqueue("job", 1, concurrency=1, unique="replace", unique_key="k")
    claim(broker, 10)
    assert texts(r.lrange(keys.waiting("job"), 0, -1)) == [waiting.id]
    again = app.enqueue("job", 2, concurrency=1, unique="replace", unique_key="k")
    assert again.id == waiting.id and r.hget(keys.task(waiting.id), "args") == b"[2]"
    assert r.llen(keys.waiting("job")) == 0 and r.zscore(keys.pending, waiting.id) is not None
    assert claim(broker, 10) == []  # indexed once: it goes back to wait, once
    assert texts(r.lrange(keys.waiting("job"), 0, -1)) == [waiting.id]
