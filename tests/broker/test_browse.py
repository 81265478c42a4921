"""browse.tasks through the Inspector: a queue's tasks in each indexed state, in the order
of their index, page by page; a state without an index is refused. (Both faces answer
alike: test_inspect.py's CASES.)"""

from __future__ import annotations

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.broker.browse import LISTED_STATES
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from tests.broker.conftest import TaskIn
from tests.broker.seed import claim


def listed(
    app: Conveyor, state: str, *, newest_first: bool = False, offset: int = 0, limit: int = 50
) -> tuple[int, list[str]]:
    """(total, ids of the page) of the default queue's tasks in `state`."""
    total, records = app.inspector.tasks(
        "default", state, newest_first=newest_first, offset=offset, limit=limit
    )
    return total, [record.id for record in records]


def test_pending_tasks_are_listed_in_claim_order(app: Conveyor) -> None:
    low = app.enqueue("job", priority=0).id
    high = app.enqueue("job", priority=9).id
    later = app.enqueue("job", priority=0).id
    assert listed(app, "pending") == (3, [high, low, later])
    assert listed(app, "pending", newest_first=True) == (3, [later, low, high])


def test_a_page_is_cut_from_the_order_and_the_total_counts_all(app: Conveyor) -> None:
    ids = [app.enqueue("job").id for _ in range(5)]
    assert listed(app, "pending", offset=1, limit=2) == (5, ids[1:3])
    assert listed(app, "pending", offset=4, limit=2) == (5, ids[4:])
    assert listed(app, "pending", offset=5) == (5, [])
    assert listed(app, "pending", newest_first=True, limit=2) == (5, [ids[4], ids[3]])


def test_pages_across_both_pending_indexes_follow_the_priority_order(
    app: Conveyor, broker: SyncBroker
) -> None:
    """Pending tasks live in the ZSET (other priorities, tasks back in pending) and the
    ready list (new tasks of the default priority): every page of the listing is a slice
    of one order, the order of priorities claims follow."""
    first = app.enqueue("job").id
    [task] = claim(broker, 1)
    assert broker.execute([broker.ops.requeue(task, crashed=False)]) == [b"pending"]
    new = [app.enqueue("job", i).id for i in range(3)]
    high, low = app.enqueue("job", priority=5).id, app.enqueue("job", priority=-5).id
    order = [high, first, *new, low]
    for offset in range(len(order) + 1):
        for limit in range(1, len(order) + 1):
            assert listed(app, "pending", offset=offset, limit=limit) == (
                len(order),
                order[offset : offset + limit],
            )
            newest = order[::-1][offset : offset + limit]
            assert listed(app, "pending", newest_first=True, offset=offset, limit=limit) == (
                len(order),
                newest,
            )
    claimed = [t.id for t in claim(broker, len(order))]
    # within the default priority, the task back in pending takes turns with the new ones
    assert claimed[0] == high and claimed[-1] == low and first in claimed[1:3]
    assert [i for i in claimed if i in new] == new


def test_waiting_tasks_are_listed_by_due_time_and_retries_apart(
    app: Conveyor, task_in: TaskIn
) -> None:
    retry = task_in("retrying", retry_in=30)
    soon = app.enqueue("job", delay=10).id
    late = app.enqueue("job", delay=60).id
    assert listed(app, "scheduled") == (3, [soon, retry, late])
    assert listed(app, "retrying") == (1, [retry])
    [record] = app.inspector.tasks("default", "retrying")[1]
    assert (record.state, record.failures) == (TaskState.RETRYING, 1)


def test_active_tasks_are_listed_by_lease_deadline(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue_many([app.message("job", i) for i in range(2)])
    first, second = claim(broker, 2)
    r.zadd(keys.active, {first.id: 2_000_000_000_000, second.id: 1_000_000_000_000})
    assert listed(app, "active") == (2, [second.id, first.id])
    records = app.inspector.tasks("default", "active")[1]
    assert {(record.state, record.worker) for record in records} == {(TaskState.ACTIVE, "w1")}


def test_dead_letters_are_listed_by_time_of_death(
    app: Conveyor, task_in: TaskIn, r: redis.Redis, keys: QueueKeys
) -> None:
    older, newer = task_in("dead"), task_in("dead")
    r.zadd(keys.dead, {older: 1_000, newer: 2_000})
    assert listed(app, "dead", newest_first=True) == (2, [newer, older])
    [record] = app.inspector.tasks("default", "dead", limit=1)[1]
    assert (record.id, record.state, record.reason) == (older, TaskState.DEAD, "error")


def test_every_listed_state_reads_its_own_index_only(app: Conveyor, task_in: TaskIn) -> None:
    made = {state: task_in(state) for state in ("dead", "active")}
    made["retrying"] = task_in("retrying", retry_in=30)
    made |= {"pending": task_in("pending"), "scheduled": task_in("scheduled", retry_in=60)}
    for state in LISTED_STATES:
        total, ids = listed(app, state)
        expected = [made[state]]
        if state == "scheduled":  # a retry waits in the scheduled index too
            expected = [made["retrying"], made["scheduled"]]
        assert (total, ids) == (len(expected), expected), state
    assert listed(app, "pending", newest_first=True) == (1, [made["pending"]])


def test_a_listed_task_whose_record_is_gone_is_shown_as_missing(
    app: Conveyor, r: redis.Redis, keys: QueueKeys
) -> None:
    gone = app.enqueue("job").id
    r.delete(keys.task(gone))
    [record] = app.inspector.tasks("default", "pending")[1]
    assert (record.id, record.reason) == (gone, "record missing")


def test_a_queue_never_used_lists_nothing(app: Conveyor) -> None:
    assert app.inspector.tasks("never", "pending") == (0, [])


@pytest.mark.parametrize("state", ["succeeded", "failed", "cancelled", "bogus", ""])
def test_a_state_without_an_index_is_refused(app: Conveyor, state: str) -> None:
    with pytest.raises(ValueError, match="not indexed"):
        app.inspector.tasks("default", state)


async def test_the_async_face_refuses_it_too(aapp: Conveyor) -> None:
    with pytest.raises(ValueError, match="not indexed"):
        await aapp.async_inspector().tasks("default", "succeeded")


def test_a_page_of_no_tasks_reads_none(app: Conveyor) -> None:
    """Every Inspector read is bounded by its limit. Fails today: limit=0 makes
    `ZRANGE index offset offset-1`, i.e. `0 -1`, the whole index, and a HGETALL of every
    task in it (see the report)."""
    app.enqueue_many([app.message("job", i) for i in range(3)])
    assert app.inspector.tasks("default", "pending", limit=0) == (3, [])
