"""dead_letter.lua: a fenced last failure ends the task, kept as a dead letter or failed."""

from __future__ import annotations

import copy
from collections.abc import Callable

import orjson
import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from tests.broker.seed import (
    STALE_WAYS,
    Stale,
    assert_ttl,
    assert_ttls_kept,
    claim_one,
    clock,
    lose_lease,
    ttls,
)
from tests.support.keyspace import dump

ERROR = orjson.dumps({"type": "ValueError", "message": "broken", "traceback": "..."})
#: Distinct retentions, so a script that picks the wrong one is caught.
FAILED_RETENTION, DEAD_RETENTION = 3600.0, 7200.0


@pytest.fixture
def broker(broker_with: Callable[..., SyncBroker]) -> SyncBroker:
    return broker_with(failed_retention=FAILED_RETENTION, dead_retention=DEAD_RETENTION)


def test_a_kept_task_becomes_a_dead_letter(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    before = dump(r, prefix)
    with clock(r) as window:
        reply = broker.execute([broker.ops.dead_letter(task, "timeout", ERROR, keep=True)])
    assert reply == [1]
    state = dump(r, prefix)
    died = int(state[keys.task(task.id)]["finished_at"])
    assert died == window.now
    expected = copy.deepcopy(before)
    del expected[keys.active]
    expected[keys.dead] = {task.id: died}
    expected[keys.task(task.id)] |= {
        "state": "dead",
        "reason": "timeout",
        "error": ERROR.decode(),
        "finished_at": str(died),
        "failures": "1",
    }
    assert state == expected
    assert_ttl(r, keys.task(task.id), DEAD_RETENTION)


def test_a_task_not_kept_ends_failed_outside_the_dead_set(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    before = dump(r, prefix)
    with clock(r) as window:
        reply = broker.execute([broker.ops.dead_letter(task, "error", ERROR, keep=False)])
    assert reply == [1]
    expected = copy.deepcopy(before)
    del expected[keys.active]
    expected[keys.task(task.id)] |= {
        "state": "failed",
        "reason": "error",
        "error": ERROR.decode(),
        "finished_at": window.now,
        "failures": "1",
    }
    assert dump(r, prefix) == expected  # no dead set at all
    assert_ttl(r, keys.task(task.id), FAILED_RETENTION)


@pytest.mark.parametrize("keep", [True, False], ids=["dead", "failed"])
@pytest.mark.parametrize("how", STALE_WAYS)
def test_dead_letter_refuses_a_stale_token(
    how: Stale, keep: bool, app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    lose_lease(broker, task, how)
    before, expiries = dump(r, prefix), ttls(r, prefix)
    assert broker.execute([broker.ops.dead_letter(task, "error", ERROR, keep=keep)]) == [0]
    assert dump(r, prefix) == before
    assert_ttls_kept(expiries, ttls(r, prefix))
