"""run_now.lua: an operator makes a delayed task or a waiting retry pending at once; a task
in any other state, or an unknown one, is refused and nothing is written."""

from __future__ import annotations

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.scripts import Call
from conveyor.broker.sync_broker import SyncBroker
from conveyor.ids import new_task_id
from tests.broker.conftest import Run, TaskIn, Unchanged
from tests.broker.seed import claim_one
from tests.support.keyspace import dump, moved


def run_now(broker: SyncBroker, keys: QueueKeys, task_id: str) -> Call:
    """The script call Admin.run_now makes for `task_id` of the default queue."""
    script_keys = [keys.scheduled, keys.retrying, keys.pending, keys.signal, keys.task(task_id),
                   keys.flow_prefix, keys.events]  # fmt: skip
    return Call.script_call(broker.ops.scripts["run_now"], script_keys, [task_id])


def test_a_delayed_task_becomes_pending_at_its_priority_and_wakes_a_worker(
    app: Conveyor, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task = app.enqueue("job", delay=60, priority=7)
    app.enqueue("job", delay=60)  # another delayed task, which stays
    ran = run(run_now(broker, keys, task.id))
    assert ran.reply == [1, b"scheduled"]
    # the other delayed task keeps its due time; the record changes its state only
    assert dump(r, prefix) == moved(
        ran.before, keys, task.id, source="scheduled", target="pending",
        score=ran.window.pending(7), wake=True, state="pending",
    )  # fmt: skip
    assert claim_one(broker).id == task.id


def test_a_waiting_retry_becomes_pending_and_leaves_the_retries_count(
    task_in: TaskIn, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task_id = task_in("retrying", retry_in=60)
    ran = run(run_now(broker, keys, task_id))
    assert ran.reply == [1, b"retrying"]
    expected = moved(
        ran.before, keys, task_id, source="scheduled", target="pending",
        score=ran.window.pending(), wake=True, state="pending",
    )  # fmt: skip
    assert ran.before[keys.retrying] == {task_id: ran.before[keys.scheduled][task_id]}
    del expected[keys.retrying]  # Redis deletes the set left empty
    # its failures, error and history stay: the next attempt is its second
    assert dump(r, prefix) == expected
    again = claim_one(broker)
    assert (again.id, again.attempts, again.failures) == (task_id, 2, 1)


@pytest.mark.parametrize("state", ["pending", "active", "succeeded", "dead", "failed", "cancelled"])
def test_a_task_not_waiting_is_refused_with_its_state(
    state: str, task_in: TaskIn, broker: SyncBroker, keys: QueueKeys, unchanged: Unchanged
) -> None:
    task_id = task_in(state)
    with unchanged():
        assert broker.execute([run_now(broker, keys, task_id)]) == [[0, state.encode()]]


def test_a_record_that_says_scheduled_but_is_not_in_the_set_is_refused(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys, unchanged: Unchanged
) -> None:
    """Another operator's run_now (or a promotion) took it first: nothing is written twice."""
    task = app.enqueue("job", delay=60)
    r.zrem(keys.scheduled, task.id)
    with unchanged():
        assert broker.execute([run_now(broker, keys, task.id)]) == [[0, b"scheduled"]]


def test_an_unknown_task_is_reported_and_nothing_written(
    app: Conveyor, broker: SyncBroker, keys: QueueKeys, unchanged: Unchanged
) -> None:
    app.enqueue("job", delay=60)
    with unchanged():
        assert broker.execute([run_now(broker, keys, new_task_id("default"))]) == [[0, b""]]
