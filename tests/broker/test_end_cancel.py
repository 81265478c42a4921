"""end_cancel.lua, and every other way a `cancelling` task can end: its worker ends it
cancelled (lease and flow-control holds released), recovery and requeue end it cancelled
rather than run it again, and its late outcome (ack, retry, dead letter) is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.ops import Renewal
from conveyor.broker.records import ClaimedTask
from conveyor.broker.scripts import Call
from conveyor.broker.sync_broker import SyncBroker
from conveyor.settings import Settings
from tests.broker.conftest import ERROR, Ran, Run, Unchanged
from tests.broker.seed import assert_ttl, claim_one, wait_leases_expired
from tests.support.keyspace import archived, dump, moved, pop_history


def cancelling(app: Conveyor, broker: SyncBroker, **options: Any) -> ClaimedTask:
    """A task claimed by w1, then cancelled while it runs."""
    app.enqueue("job", **options)
    task = claim_one(broker)
    assert broker.run(broker.ops.cancel(task.id)) == (True, "active")
    return task


def ended_cancelled(ran: Ran, keys: QueueKeys, task: ClaimedTask, r: redis.Redis,
                    prefix: str) -> None:  # fmt: skip
    """The keyspace after `task` left its lease and ended cancelled, its attempt archived."""
    expected = moved(
        ran.before, keys, task.id, source="active", state="cancelled",
        finished_at=ran.window.now,
    )  # fmt: skip
    state = dump(r, prefix)
    key = keys.task(task.id)
    assert pop_history(state, key) == {1: archived(ran.before, key, ran.window.now, "cancelled")}
    assert state == expected


def test_its_worker_ends_it_cancelled(
    app: Conveyor, broker: SyncBroker, run: Run, settings: Settings, r: redis.Redis,
    prefix: str, keys: QueueKeys,
) -> None:  # fmt: skip
    task = cancelling(app, broker)
    ran = run(broker.ops.end_cancel(task))
    assert ran.reply == 1
    ended_cancelled(ran, keys, task, r, prefix)
    assert_ttl(r, keys.task(task.id), settings.cancelled_retention)
    # a repeat (a client retry after a lost reply) is acknowledged and writes nothing
    before = dump(r, prefix)
    assert broker.execute([broker.ops.end_cancel(task)]) == [1]
    assert dump(r, prefix) == before


def test_an_active_task_or_a_stale_token_is_refused(
    app: Conveyor, broker: SyncBroker, unchanged: Unchanged
) -> None:
    app.enqueue("job")
    active = claim_one(broker)
    stale = cancelling(app, broker)
    with unchanged():
        assert broker.execute([broker.ops.end_cancel(active)]) == [0]
        old = ClaimedTask(**{**_fields(stale), "token": stale.token - 1})
        assert broker.execute([broker.ops.end_cancel(old)]) == [0]


def _fields(task: ClaimedTask) -> dict[str, Any]:
    return {name: getattr(task, name) for name in task.__slots__}


def test_its_concurrency_slot_and_unique_key_are_released(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    job = app.task(name="limited", concurrency=1, unique=True)(lambda n: n)
    first = job.enqueue(1)
    task = claim_one(broker)
    waiting = job.enqueue(2)  # another key: its own unique lock, but the same slot
    assert broker.run(broker.ops.claim("default", 1, "w2")).tasks == []  # no free slot
    assert broker.run(broker.ops.cancel(first.id)) == (True, "active")
    assert r.scard(keys.slots("limited")) == 1  # cancelling still holds it
    assert broker.execute([broker.ops.end_cancel(task)]) == [1]
    assert r.scard(keys.slots("limited")) == 0
    [next_task] = broker.run(broker.ops.claim("default", 1, "w2")).tasks
    assert next_task.id == waiting.id
    assert not [k for k in r.scan_iter(keys.unique("*")) if r.get(k) == first.id.encode()]


@pytest.mark.parametrize("outcome", ["ack", "retry", "dead", "failed"])
def test_a_late_outcome_is_refused(
    outcome: str, app: Conveyor, broker: SyncBroker, unchanged: Unchanged
) -> None:
    task = cancelling(app, broker)
    calls: dict[str, Callable[[], Call]] = {
        "ack": lambda: broker.ops.ack([(task, b'"late"')]),
        "retry": lambda: broker.ops.retry(task, 0.0, ERROR),
        "dead": lambda: broker.ops.dead_letter(task, "error", ERROR),
        "failed": lambda: broker.ops.dead_letter(task, "error", ERROR, keep=False),
    }
    with unchanged():
        reply = broker.execute([calls[outcome]()])[0]
    assert reply == ([0] if outcome == "ack" else 0)


def test_progress_is_refused_once_cancelling(
    app: Conveyor, broker: SyncBroker, unchanged: Unchanged
) -> None:
    task = cancelling(app, broker)
    with unchanged():
        assert broker.run(broker.ops.report_progress(task, b'{"fraction":0.5}', None)) is False


def test_a_renewal_keeps_its_lease_and_names_it(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    """The fallback of a lost pub/sub message: the worker's next beat learns of it."""
    app.enqueue("job")
    running = claim_one(broker)
    task = cancelling(app, broker)
    r.zadd(keys.active, {task.id: 1}, xx=True)  # about to expire: the renewal must show
    held = [(running.id, running.token), (task.id, task.token)]
    assert broker.run(broker.ops.extend_leases("default", held)) == Renewal([], [task.id])
    assert r.zscore(keys.active, task.id) > 1  # type: ignore[operator]


def test_a_stopping_worker_does_not_give_it_back(
    app: Conveyor, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task = cancelling(app, broker)
    ran = run(broker.ops.requeue(task, crashed=False))
    assert ran.reply == b"cancelled"
    ended_cancelled(ran, keys, task, r, prefix)


def test_recovery_ends_it_cancelled_when_its_worker_is_lost(
    short_lease: Conveyor, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    broker = short_lease.sync_broker()
    task = cancelling(short_lease, broker)
    wait_leases_expired(r, keys, task.id)
    ran = run(broker.ops.recover("default"), on=broker)
    assert ran.reply == [(task.id, "cancelled")]
    ended_cancelled(ran, keys, task, r, prefix)
    assert r.pttl(keys.task(task.id)) > 0


def test_the_reaper_ends_it_cancelled_when_its_worker_is_dead(
    app: Conveyor, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task = cancelling(app, broker)
    ran = run(broker.ops.release_worker("default", "w1"))
    assert ran.reply == (-1, [(task.id, "cancelled")])
    ended_cancelled(ran, keys, task, r, prefix)
