"""promote_due.lua: due scheduled tasks and retries become pending, exactly once each."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.ops import MAINTENANCE_BATCH
from conveyor.broker.sync_broker import SyncBroker
from tests.broker.conftest import Ran, Run, TaskIn, Unchanged
from tests.broker.seed import claim_one, clock, scores, wait_due
from tests.support.keyspace import dump, moved


def promoted(ran: Ran, keys: QueueKeys, task_id: str, priority: int = 0) -> dict[str, Any]:
    """The keyspace after `task_id` of `priority` was promoted, a worker woken for it."""
    return moved(
        ran.before, keys, task_id, source="scheduled", target="pending",
        score=ran.window.pending(priority), wake=True, state="pending",
    )  # fmt: skip


def test_promotes_only_due_tasks_and_returns_the_wait_for_the_next(
    app: Conveyor, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    due = app.enqueue("job", "due", delay=0.001, priority=9)
    later = app.enqueue("job", "later", delay=60)
    wait_due(r, keys, due.id)
    ran = run(broker.ops.promote_due("default"))
    count, wait = ran.reply
    assert count == 1
    assert wait is not None
    next_due, window = ran.before[keys.scheduled][later.id], ran.window
    assert (next_due - window.hi) / 1000 <= wait <= (next_due - window.lo) / 1000
    assert dump(r, prefix) == promoted(ran, keys, due.id, priority=9)


def test_a_due_retry_is_promoted(
    task_in: TaskIn, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task_id = task_in("retrying", retry_in=0)
    ran = run(broker.ops.promote_due("default"))
    assert ran.reply == (1, None)
    expected = promoted(ran, keys, task_id)
    # it leaves the retries' count too (Redis deletes the set left empty)
    assert ran.before[keys.retrying] == {task_id: ran.before[keys.scheduled][task_id]}
    del expected[keys.retrying]
    assert dump(r, prefix) == expected
    assert claim_one(broker).token == 2


def test_a_retry_not_yet_due_stays_counted_while_others_are_promoted(
    app: Conveyor, task_in: TaskIn, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    waiting = task_in("retrying", retry_in=60)
    app.enqueue("job", delay=0.001)
    time.sleep(0.01)
    assert broker.run(broker.ops.promote_due("default"))[0] == 1
    assert scores(r, keys.retrying).keys() == {waiting}
    [stats] = app.inspector.queue_stats(["default"])
    assert (stats.scheduled, stats.retrying, stats.pending) == (1, 1, 1)


def test_nothing_due_changes_nothing(
    app: Conveyor,
    broker: SyncBroker,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
    unchanged: Unchanged,
) -> None:
    assert broker.run(broker.ops.promote_due("default")) == (0, None)
    assert dump(r, prefix) == {}
    later = app.enqueue("job", delay=30)
    next_due = scores(r, keys.scheduled)[later.id]
    with unchanged(), clock(r) as window:
        promoted, wait = broker.run(broker.ops.promote_due("default"))
    # the wait runs to the due time from the script's `now`, however slow the call was
    assert promoted == 0 and wait is not None
    assert (next_due - window.hi) / 1000 <= wait <= (next_due - window.lo) / 1000


def test_a_due_entry_whose_record_is_gone_is_dropped(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    handle = app.enqueue("job", delay=0.001)
    r.delete(keys.task(handle.id))
    wait_due(r, keys)
    assert broker.run(broker.ops.promote_due("default")) == (0, None)
    assert dump(r, prefix) == {f"{prefix}:queues": ["default"]}  # and no worker woken


def test_concurrent_schedulers_promote_each_task_exactly_once(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    count, threads = 2 * MAINTENANCE_BATCH + 200, 8
    handles = app.enqueue_many([app.message("job", i, delay=0.001) for i in range(count)])
    wait_due(r, keys)
    start = threading.Barrier(threads)

    def promote_all() -> list[int]:
        start.wait()
        counts = []
        while True:
            promoted, wait = broker.run(broker.ops.promote_due("default"))
            counts.append(promoted)
            if promoted == 0 and wait is None:
                return counts

    with ThreadPoolExecutor(threads) as pool:
        jobs = [pool.submit(promote_all) for _ in range(threads)]
    counts = [n for job in jobs for n in job.result()]
    assert sum(counts) == count
    assert max(counts) <= MAINTENANCE_BATCH
    state = dump(r, prefix)
    assert keys.scheduled not in state
    assert sorted(state[keys.pending]) == sorted(h.id for h in handles)
    assert {state[keys.task(h.id)]["state"] for h in handles} == {"pending"}


def test_a_due_retry_whose_record_is_gone_leaves_the_retries_count_too(
    task_in: TaskIn, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    """The retries' count leaves by due time, so an entry that outlived its task cannot
    stay counted once due."""
    task_id = task_in("retrying", retry_in=0)
    r.delete(keys.task(task_id))
    assert run(broker.ops.promote_due("default")).reply == (0, None)
    assert dump(r, prefix) == {f"{prefix}:queues": ["default"]}  # and no worker woken
