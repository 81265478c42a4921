"""delete_task.lua: an operator deletes a task that no worker runs, in any state, with its
record and every index entry; an active task or an unknown one is refused as is."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.scripts import Call
from conveyor.broker.sync_broker import SyncBroker
from conveyor.ids import new_task_id
from tests.broker.conftest import Run, TaskIn, Unchanged
from tests.support.keyspace import dump, entry


def delete_task(broker: SyncBroker, keys: QueueKeys, task_id: str) -> Call:
    """The script call Admin.delete_task makes for `task_id` of the default queue."""
    script_keys = [
        keys.pending, keys.scheduled, keys.retrying, keys.dead, keys.active, keys.task(task_id),
        keys.ready, keys.flow_prefix, keys.events,
    ]  # fmt: skip
    return Call.script_call(broker.ops.scripts["delete_task"], script_keys, [task_id])


def without(before: dict[str, Any], keys: QueueKeys, task_id: str) -> dict[str, Any]:
    """The keyspace `before` with `task_id`'s record and index entries gone (Redis deletes
    a set left empty)."""
    expected = copy.deepcopy(before)
    del expected[keys.task(task_id)]
    for index in (keys.pending, keys.ready, keys.scheduled, keys.retrying, keys.dead):
        members = expected.get(index)
        if isinstance(members, list) and entry(task_id) in members:  # the ready list: ULIDs
            members.remove(entry(task_id))
        elif isinstance(members, dict) and task_id in members:
            del members[task_id]
        if members is not None and not members:
            del expected[index]
    return expected


#: Each state a task can be deleted in, with the indexes holding it there.
INDEXED = {
    "pending": ("ready",),
    "scheduled": ("scheduled",),
    "retrying": ("scheduled", "retrying"),
    "dead": ("dead",),
    "succeeded": (),
    "failed": (),
    "cancelled": (),
}


@pytest.mark.parametrize("state", INDEXED)
def test_a_task_not_running_is_deleted_with_its_index_entries(
    state: str,
    app: Conveyor,
    task_in: TaskIn,
    broker: SyncBroker,
    run: Run,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
) -> None:
    task_id = task_in(state)
    other = app.enqueue("job").id  # a task of the same queue, left alone
    ran = run(delete_task(broker, keys, task_id))
    assert ran.reply == [1, state.encode()]
    members = {name: ran.before[getattr(keys, name)] for name in INDEXED[state]}
    held = {name for name, held in members.items() if task_id in held or entry(task_id) in held}
    assert held == set(INDEXED[state])  # the seed put it where the test removes it from
    expected = without(ran.before, keys, task_id)
    assert entry(other) in expected[keys.ready]
    assert dump(r, prefix) == expected


def test_an_active_task_is_refused_while_a_worker_runs_it(
    task_in: TaskIn, broker: SyncBroker, keys: QueueKeys, unchanged: Unchanged
) -> None:
    task_id = task_in("active")
    with unchanged():
        assert broker.execute([delete_task(broker, keys, task_id)]) == [[0, b"active"]]


def test_a_leased_task_is_refused_whatever_its_record_says(
    task_in: TaskIn, broker: SyncBroker, r: redis.Redis, keys: QueueKeys, unchanged: Unchanged
) -> None:
    """The lease decides, not the state field: a worker may hold it."""
    task_id = task_in("active")
    r.hset(keys.task(task_id), "state", "pending")
    with unchanged():
        assert broker.execute([delete_task(broker, keys, task_id)]) == [[0, b"active"]]


def test_an_unknown_task_is_reported_and_nothing_written(
    app: Conveyor, broker: SyncBroker, keys: QueueKeys, unchanged: Unchanged
) -> None:
    app.enqueue("job")
    with unchanged():
        assert broker.execute([delete_task(broker, keys, new_task_id("default"))]) == [[0, b""]]
