"""cancel.lua: a task that has not started is cancelled; a running one becomes cancelling
(its worker is told on the queue's channel); a finished one is refused as is."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.ids import new_task_id
from conveyor.settings import Settings
from tests.broker.conftest import Ran, Run, TaskIn, Unchanged
from tests.broker.seed import assert_ttl
from tests.support.keyspace import dump, moved


def cancelled(ran: Ran, keys: QueueKeys, task_id: str, source: str) -> dict[str, Any]:
    """The keyspace after `task_id` was cancelled out of its `source` set."""
    return moved(
        ran.before, keys, task_id, source=source, state="cancelled", finished_at=ran.window.now
    )


def test_a_pending_task_is_cancelled(
    app: Conveyor,
    broker: SyncBroker,
    run: Run,
    settings: Settings,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
) -> None:
    target, other = app.enqueue_many([app.message("job", i) for i in range(2)])
    ran = run(broker.ops.cancel(target.id))
    assert ran.reply == (True, "pending")
    # the other task is still pending
    assert dump(r, prefix) == cancelled(ran, keys, target.id, "pending")
    assert_ttl(r, keys.task(target.id), settings.cancelled_retention)
    assert r.pttl(keys.task(other.id)) == -1


@pytest.mark.parametrize("state", ["scheduled", "retrying"])
def test_a_task_waiting_for_its_time_is_cancelled(
    state: str,
    task_in: TaskIn,
    broker: SyncBroker,
    run: Run,
    settings: Settings,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
) -> None:
    task_id = task_in(state)
    ran = run(broker.ops.cancel(task_id))
    assert ran.reply == (True, state)
    expected = cancelled(ran, keys, task_id, "scheduled")
    expected.pop(keys.retrying, None)  # a retry leaves the retries' count too
    assert dump(r, prefix) == expected
    assert_ttl(r, keys.task(task_id), settings.cancelled_retention)


@pytest.mark.parametrize("state", ["active", "cancelling"])
def test_a_running_task_becomes_cancelling_and_its_workers_are_told(
    state: str, task_in: TaskIn, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str,
    keys: QueueKeys,
) -> None:  # fmt: skip
    task_id = task_in(state)
    listener = r.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(keys.cancels)
    listener.get_message(timeout=1)  # the subscription's confirmation
    ran = run(broker.ops.cancel(task_id))
    assert ran.reply == (True, state)
    expected = ran.before
    expected[keys.task(task_id)]["state"] = "cancelling"
    assert dump(r, prefix) == expected  # it keeps its lease: only its worker ends it
    message = listener.get_message(timeout=1)
    assert message is not None and message["data"] == task_id.encode()
    listener.close()
    assert r.pttl(keys.task(task_id)) == -1


@pytest.mark.parametrize("state", ["succeeded", "dead", "failed", "cancelled"])
def test_a_finished_task_is_refused_with_its_state(
    state: str, task_in: TaskIn, unchanged: Unchanged, broker: SyncBroker
) -> None:
    task_id = task_in(state)
    with unchanged():
        assert broker.run(broker.ops.cancel(task_id)) == (False, state)


def test_an_unknown_task_is_reported_and_nothing_written(
    app: Conveyor, broker: SyncBroker, unchanged: Unchanged
) -> None:
    app.enqueue("job")
    with unchanged():
        assert broker.run(broker.ops.cancel(new_task_id("default"))) == (False, "")
