"""requeue.lua: a claimed task goes back to pending now; a crash counts toward the limit."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.records import ClaimedTask
from conveyor.broker.sync_broker import SyncBroker
from conveyor.settings import Settings
from tests.broker.conftest import Buried, Claimed, Ran, Run, StaleClaim, Unchanged, lost_error
from tests.broker.seed import (
    claim_one,
    clock,
)
from tests.support.keyspace import archived, dump, moved, pop_history


def back_to_pending(
    ran: Ran, keys: QueueKeys, task: ClaimedTask, priority: int = 0, **fields: Any
) -> dict[str, Any]:
    """The keyspace after `task` of `priority` went from active back to pending, a worker
    woken for it."""
    return moved(
        ran.before, keys, task.id, source="active", target="pending",
        score=ran.window.pending(priority), wake=True, state="pending", **fields,
    )  # fmt: skip


def test_an_unfinished_task_goes_back_to_pending_without_a_crash(
    claimed: Claimed, run: Run, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task = claimed(priority=7)
    ran = run(broker.ops.requeue(task, crashed=False))
    assert ran.reply == b"pending"
    expected = back_to_pending(ran, keys, task, priority=7)
    state = dump(r, prefix)
    key = keys.task(task.id)
    assert pop_history(state, key) == {1: archived(ran.before, key, ran.window.now, "interrupted")}
    assert state == expected  # no crash counted, token and attempts kept
    assert r.pttl(keys.task(task.id)) == -1


def test_a_crash_is_counted_and_the_task_goes_back_to_pending(
    claimed: Claimed, run: Run, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task = claimed()
    ran = run(broker.ops.requeue(task, crashed=True))
    assert ran.reply == b"pending"
    expected = back_to_pending(ran, keys, task, crashes="1")
    state = dump(r, prefix)
    key = keys.task(task.id)
    died = lost_error("the process running it died")
    assert pop_history(state, key) == {
        1: archived(ran.before, key, ran.window.now, "crashed", died)
    }
    assert state == expected


def test_the_last_allowed_crash_makes_a_dead_letter(
    app: Conveyor, broker: SyncBroker, run: Run, settings: Settings, buried: Buried
) -> None:
    app.enqueue("poison")
    outcomes = []
    for attempt in range(1, settings.max_crashes + 1):
        task = claim_one(broker, f"w{attempt}")
        ran = run(broker.ops.requeue(task, crashed=True))
        outcomes.append(ran.reply)
    assert outcomes == [b"pending"] * (settings.max_crashes - 1) + [b"dead"]
    crashes, last = settings.max_crashes, f"w{settings.max_crashes}"
    buried(
        ran, task.id, crashes, f"the process running it died {crashes} times; last worker {last}"
    )


@pytest.mark.parametrize("crashed", [False, True], ids=["stopping", "crashed"])
def test_requeue_refuses_a_stale_token(
    crashed: bool, stale: StaleClaim, unchanged: Unchanged, broker: SyncBroker
) -> None:
    with unchanged():  # in particular, no crash is counted
        assert broker.execute([broker.ops.requeue(stale.task, crashed=crashed)]) == [b""]


def test_a_corrupt_priority_loses_no_task(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    r.hset(keys.task(task.id), "priority", "high")
    with clock(r) as window:  # read as priority 0, as promote_due.lua and replay.lua do
        assert broker.execute([broker.ops.requeue(task, crashed=False)]) == [b"pending"]
    state = dump(r, prefix)
    assert state[keys.pending] == {task.id: window.pending(0)}
    assert keys.active not in state and state[keys.task(task.id)]["state"] == "pending"
