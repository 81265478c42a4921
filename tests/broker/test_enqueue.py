"""enqueue.lua: new tasks become pending or scheduled, with their fields, in priority order."""

from __future__ import annotations

import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.ops import ENQUEUE_CHUNK
from conveyor.broker.sync_broker import SyncBroker
from conveyor.ids import id_millis
from conveyor.settings import Settings
from tests.broker.seed import assert_ttl, claim, clock
from tests.support.keyspace import dump, entry, pending_order


def test_a_task_without_delay_is_pending_and_wakes_a_worker(
    app: Conveyor, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    with clock(r) as window:
        handle = app.enqueue("send", "a@b.c", subject="hi")
    assert handle.id.startswith("default:") and not handle.replayed
    state = dump(r, prefix)
    assert id_millis(handle.id) == window.now  # the enqueue time: kept in the id only
    assert state == {
        f"{prefix}:queues": ["default"],
        keys.ready: [entry(handle.id)],  # its ULID: the queue is the list's
        keys.signal: ["1"],
        keys.task(handle.id): {
            "name": "send",
            "args": '["a@b.c"]',
            "kwargs": '{"subject":"hi"}',
            "state": "pending",
        },
    }
    assert r.pttl(keys.task(handle.id)) == -1


def test_a_delayed_task_is_scheduled_at_its_due_time(
    app: Conveyor, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    with clock(r) as window:
        handle = app.enqueue("send", delay=30)
    state = dump(r, prefix)
    due = int(state[keys.task(handle.id)]["due_at"])
    assert due == window.at(30_000)
    assert state == {  # no pending entry, and no wake-up: nothing can run yet
        f"{prefix}:queues": ["default"],
        keys.scheduled: {handle.id: due},
        keys.task(handle.id): {
            "name": "send",
            "state": "scheduled",
            "due_at": str(due),
        },
    }


def test_options_are_stored_in_the_record(
    app: Conveyor, settings: Settings, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    with clock(r) as window:
        handle = app.enqueue(
            "send", 1, priority=5, max_retries=2, timeout=1.5, idempotency_key="order-7"
        )
    state = dump(r, prefix)
    assert state == {
        f"{prefix}:queues": ["default"],
        keys.pending: {handle.id: window.pending(5)},
        keys.signal: ["1"],
        keys.idempotency("order-7"): handle.id,
        keys.task(handle.id): {
            "name": "send",
            "args": "[1]",
            "priority": "5",
            "max_retries": "2",
            "timeout": "1.5",
            "idempotency_key": "order-7",
            "state": "pending",
        },
    }
    assert_ttl(r, keys.idempotency("order-7"), settings.idempotency_window)


def test_pending_order_is_priority_first_then_fifo(
    app: Conveyor, r: redis.Redis, keys: QueueKeys
) -> None:
    before = app.enqueue("job", priority=0)
    batch = app.enqueue_many(
        [app.message("job", i, priority=p) for i, p in enumerate([0, 10, -5, 10, 0, 100, -100])]
    )
    after = app.enqueue("job", priority=10)
    order = pending_order(r, keys)
    expected = [batch[5], batch[1], batch[3], after, before, batch[0], batch[4], batch[2], batch[6]]
    assert order == [h.id for h in expected]


def test_a_reused_idempotency_key_returns_the_first_task_and_writes_nothing(
    app: Conveyor, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    first = app.enqueue("charge", 10, idempotency_key="order-1")
    r.delete(keys.signal)  # taken by a worker: a replay must not wake one again
    before = dump(r, prefix)
    again = app.enqueue("charge", 99, idempotency_key="order-1", priority=9)
    delayed = app.enqueue("charge", 98, idempotency_key="order-1", delay=5)
    assert (again.id, again.replayed) == (first.id, True)
    assert (delayed.id, delayed.replayed) == (first.id, True)
    assert dump(r, prefix) == before


def test_a_key_repeated_within_one_batch_enqueues_one_task(
    app: Conveyor, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    first, other, repeat = app.enqueue_many(
        [
            app.message("charge", 1, idempotency_key="order-2"),
            app.message("charge", 2),
            app.message("charge", 3, idempotency_key="order-2"),
        ]
    )
    assert (first.replayed, other.replayed, repeat.replayed) == (False, False, True)
    assert repeat.id == first.id != other.id
    state = dump(r, prefix)
    assert state[keys.ready] == [entry(first.id), entry(other.id)]
    assert state[keys.idempotency("order-2")] == first.id
    assert state[keys.task(first.id)]["args"] == "[1]"
    hashes = [key for key in state if key.startswith(keys.task_prefix)]
    assert sorted(hashes) == sorted([keys.task(first.id), keys.task(other.id)])


def test_the_signal_list_holds_at_most_one_element(
    app: Conveyor, r: redis.Redis, keys: QueueKeys
) -> None:
    for _ in range(3):
        app.enqueue("job")
    app.enqueue_many([app.message("job") for _ in range(5)])
    assert r.lrange(keys.signal, 0, -1) == [b"1"]


def test_only_the_task_that_ends_an_empty_ready_list_wakes_a_worker(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    """A worker that took the wake-up claims, and a claim that leaves work behind wakes the
    next: a task joining tasks already waiting need not wake anyone (and reads nothing)."""
    app.enqueue("job")
    assert r.lpop(keys.signal) == b"1"  # a worker took it
    app.enqueue("job")
    app.enqueue_many([app.message("job") for _ in range(2)])
    assert r.exists(keys.signal) == 0
    claim(broker, 1)
    assert r.lpop(keys.signal) == b"1"  # three left: the claim woke the next worker
    claim(broker, 3)
    assert r.exists(keys.signal) == 0  # nothing left: nobody to wake
    app.enqueue("job", priority=3)  # the ZSET's tasks always wake one
    assert r.lpop(keys.signal) == b"1"
    app.enqueue("job")
    assert r.lpop(keys.signal) == b"1"  # the ready list was empty again


def test_a_batch_over_the_chunk_size_is_split_and_kept_in_order(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    count, repeat = 2 * ENQUEUE_CHUNK + 500, 2 * ENQUEUE_CHUNK + 100
    messages = [
        app.message("bulk", i, idempotency_key="dup" if i in (0, repeat) else None)
        for i in range(count)
    ]
    tasks = [app.producer.encode(m) for m in messages]
    op = broker.ops.enqueue(tasks, ["default"])
    assert [c.script.name if c.script else c.args[0] for c in op.calls] == [
        "SADD",  # the queue is registered before any of its keys exist
        *["enqueue"] * 3,
    ]
    results = broker.run(op)
    # the repeated key sits in another chunk than the first: it still finds the first task
    first_id = tasks[0].id
    assert [res.id for res in results] == [
        first_id if i == repeat else t.id for i, t in enumerate(tasks)
    ]
    assert [res.replayed for res in results] == [i == repeat for i in range(count)]
    stored = [t for i, t in enumerate(tasks) if i != repeat]
    state = dump(r, prefix)
    assert state[keys.ready] == [entry(t.id) for t in stored]
    hashes = {key for key in state if key.startswith(keys.task_prefix)}
    assert hashes == {keys.task(t.id) for t in stored}
    for number, task in enumerate(tasks):
        if number != repeat:
            record = state[keys.task(task.id)]
            assert (record["state"], record["args"]) == ("pending", f"[{number}]")


def test_a_batch_across_queues_returns_handles_in_message_order(
    app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    queues = ["emails", "reports", "emails", "default", "reports"]
    handles = app.enqueue_many([app.message("job", i, queue=q) for i, q in enumerate(queues)])
    assert [h.id.split(":")[0] for h in handles] == queues
    state = dump(r, prefix)
    assert state[f"{prefix}:queues"] == ["default", "emails", "reports"]
    for number, (handle, queue) in enumerate(zip(handles, queues, strict=True)):
        assert state[f"{prefix}:{{{queue}}}:task:{handle.id}"]["args"] == f"[{number}]"
    assert state[f"{prefix}:{{emails}}:ready"] == [entry(handles[0].id), entry(handles[2].id)]
    assert state[f"{prefix}:{{reports}}:ready"] == [entry(handles[1].id), entry(handles[4].id)]
