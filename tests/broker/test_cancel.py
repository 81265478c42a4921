"""cancel.lua: a task that has not started can be cancelled; any other is refused as is."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.ids import new_task_id
from conveyor.settings import Settings
from tests.broker.seed import assert_ttl, assert_ttls_kept, claim_one, clock, ttls
from tests.support.keyspace import dump


def retrying(app: Conveyor, broker: SyncBroker) -> str:
    """A task waiting for its next attempt."""
    app.enqueue("job")
    task = claim_one(broker)
    assert broker.execute([broker.ops.retry(task, 60, b'"error"')]) == [1]
    return task.id


def test_a_pending_task_is_cancelled(
    app: Conveyor,
    broker: SyncBroker,
    settings: Settings,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
) -> None:
    target, other = app.enqueue_many([app.message("job", i) for i in range(2)])
    before = dump(r, prefix)
    with clock(r) as window:
        assert broker.run(broker.ops.cancel(target.id)) == (True, "pending")
    expected = copy.deepcopy(before)
    del expected[keys.pending][target.id]
    expected[keys.task(target.id)] |= {"state": "cancelled", "finished_at": window.now}
    assert dump(r, prefix) == expected  # the other task is still pending
    assert_ttl(r, keys.task(target.id), settings.cancelled_retention)
    assert r.pttl(keys.task(other.id)) == -1


@pytest.mark.parametrize("state", ["scheduled", "retrying"])
def test_a_task_waiting_for_its_time_is_cancelled(
    state: str,
    app: Conveyor,
    broker: SyncBroker,
    settings: Settings,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
) -> None:
    task_id = app.enqueue("job", delay=60).id if state == "scheduled" else retrying(app, broker)
    before = dump(r, prefix)
    with clock(r) as window:
        assert broker.run(broker.ops.cancel(task_id)) == (True, state)
    expected = copy.deepcopy(before)
    del expected[keys.scheduled]
    expected[keys.task(task_id)] |= {"state": "cancelled", "finished_at": window.now}
    assert dump(r, prefix) == expected
    assert_ttl(r, keys.task(task_id), settings.cancelled_retention)


def active(app: Conveyor, broker: SyncBroker) -> str:
    app.enqueue("job")
    return claim_one(broker).id


def succeeded(app: Conveyor, broker: SyncBroker) -> str:
    app.enqueue("job")
    task = claim_one(broker)
    assert broker.execute([broker.ops.ack([(task, b"1")])]) == [[1]]
    return task.id


def dead(app: Conveyor, broker: SyncBroker) -> str:
    app.enqueue("job")
    task = claim_one(broker)
    assert broker.execute([broker.ops.dead_letter(task, "error", b"{}")]) == [1]
    return task.id


def failed(app: Conveyor, broker: SyncBroker) -> str:
    app.enqueue("job")
    task = claim_one(broker)
    assert broker.execute([broker.ops.dead_letter(task, "error", b"{}", keep=False)]) == [1]
    return task.id


def cancelled(app: Conveyor, broker: SyncBroker) -> str:
    task_id = app.enqueue("job").id
    assert broker.run(broker.ops.cancel(task_id)) == (True, "pending")
    return task_id


@pytest.mark.parametrize("make", [active, succeeded, dead, failed, cancelled])
def test_a_started_or_finished_task_is_refused_with_its_state(
    make: Callable[[Conveyor, SyncBroker], str],
    app: Conveyor,
    broker: SyncBroker,
    r: redis.Redis,
    prefix: str,
) -> None:
    task_id = make(app, broker)
    before, expiries = dump(r, prefix), ttls(r, prefix)
    assert broker.run(broker.ops.cancel(task_id)) == (False, make.__name__)
    assert dump(r, prefix) == before
    assert_ttls_kept(expiries, ttls(r, prefix))


def test_an_unknown_task_is_reported_and_nothing_written(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str
) -> None:
    app.enqueue("job")
    before = dump(r, prefix)
    assert broker.run(broker.ops.cancel(new_task_id("default"))) == (False, "")
    assert dump(r, prefix) == before
