"""retry.lua: a fenced failure counts, and schedules the next attempt after its backoff."""

from __future__ import annotations

import copy

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from tests.broker.seed import (
    STALE_WAYS,
    Stale,
    assert_ttls_kept,
    claim_one,
    clock,
    lose_lease,
    ttls,
)
from tests.support.keyspace import dump

ERROR = b'{"type":"ValueError","message":"broken","traceback":""}'


def test_retry_schedules_the_next_attempt_after_the_delay(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app.enqueue("job", 1)
    task = claim_one(broker)
    before = dump(r, prefix)
    with clock(r) as window:
        assert broker.execute([broker.ops.retry(task, 5.0, ERROR)]) == [1]
    state = dump(r, prefix)
    due = int(state[keys.task(task.id)]["due_at"])
    assert due == window.at(5000)
    expected = copy.deepcopy(before)
    del expected[keys.active]
    expected[keys.scheduled] = {task.id: due}
    expected[keys.task(task.id)] |= {
        "state": "retrying",
        "failures": "1",
        "error": ERROR.decode(),
        "due_at": str(due),
    }
    assert state == expected  # token, attempts and worker are kept
    assert r.pttl(keys.task(task.id)) == -1


def test_failures_accumulate_across_retries(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue("job")
    first = claim_one(broker)
    assert broker.execute([broker.ops.retry(first, 0, b'"one"')]) == [1]
    assert broker.run(broker.ops.promote_due("default")) == (1, None)
    second = claim_one(broker)
    assert (second.token, second.attempts, second.failures) == (2, 2, 1)
    assert second.due_at_ms is not None
    assert broker.execute([broker.ops.retry(second, 0, b'"two"')]) == [1]
    record = r.hgetall(keys.task(first.id))
    assert (record[b"failures"], record[b"error"], record[b"state"]) == (
        b"2",
        b'"two"',
        b"retrying",
    )


@pytest.mark.parametrize("how", STALE_WAYS)
def test_retry_refuses_a_stale_token(
    how: Stale, app: Conveyor, broker: SyncBroker, r: redis.Redis, prefix: str
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    lose_lease(broker, task, how)
    before, expiries = dump(r, prefix), ttls(r, prefix)
    assert broker.execute([broker.ops.retry(task, 1.0, ERROR)]) == [0]
    assert dump(r, prefix) == before
    assert_ttls_kept(expiries, ttls(r, prefix))
