"""retry.lua: a fenced failure counts, and schedules the next attempt after its backoff."""

from __future__ import annotations

import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.model import ATTEMPT_HISTORY
from tests.broker.conftest import Claimed, Run, StaleClaim, Unchanged
from tests.broker.seed import (
    claim_one,
)
from tests.support.keyspace import archived, dump, moved, pop_history

ERROR = b'{"type":"ValueError","message":"broken","traceback":""}'


def test_retry_schedules_the_next_attempt_after_the_delay(
    claimed: Claimed, run: Run, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task = claimed()
    ran = run(broker.ops.retry(task, 5.0, ERROR))
    assert ran.reply == 1
    state = dump(r, prefix)
    key = keys.task(task.id)
    due = int(state[key]["due_at"])
    assert due == ran.window.at(5000)
    # the failed attempt joins the record's history
    failed = archived(ran.before, key, ran.window.now, "retried", ERROR)
    assert pop_history(state, key) == {1: failed}
    expected = moved(
        ran.before, keys, task.id, source="active", target="scheduled", score=due,
        state="retrying", failures="1", error=ERROR.decode(), due_at=str(due),
    )  # fmt: skip
    # the retry is counted apart from the delayed tasks
    expected[keys.retrying] = {task.id: due}
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


def test_retry_refuses_a_stale_token(
    stale: StaleClaim, unchanged: Unchanged, broker: SyncBroker
) -> None:
    with unchanged():
        assert broker.execute([broker.ops.retry(stale.task, 1.0, ERROR)]) == [0]


def test_the_history_keeps_the_last_attempts_only(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue("job")
    for attempt in range(1, ATTEMPT_HISTORY + 3):
        task = claim_one(broker, f"w{attempt}")
        assert broker.execute([broker.ops.retry(task, 0, b'{"message":"%d"}' % attempt)]) == [1]
        assert broker.run(broker.ops.promote_due("default"))[0] == 1
    record = app.inspector.task(task.id)
    assert record is not None
    numbers = list(range(3, ATTEMPT_HISTORY + 3))
    assert [a.number for a in record.history] == numbers
    assert [(a.worker, a.error) for a in record.history] == [
        (f"w{n}", {"message": str(n)}) for n in numbers
    ]
    assert not r.hexists(keys.task(task.id), "attempt:2")


def test_a_repeated_retry_is_acknowledged_and_writes_nothing_more(
    claimed: Claimed, broker: SyncBroker, unchanged: Unchanged
) -> None:
    """A client's retry of a call whose reply was lost: the task is retrying under that
    token, so the call succeeded; one failure and one history entry, not two."""
    task = claimed()
    assert broker.execute([broker.ops.retry(task, 5.0, ERROR)]) == [1]
    with unchanged():
        assert broker.execute([broker.ops.retry(task, 5.0, ERROR)]) == [1]


def test_an_attempt_whose_count_is_corrupt_is_retried_without_a_history_entry(
    claimed: Claimed,
    run: Run,
    broker: SyncBroker,
    r: redis.Redis,
    prefix: str,
    keys: QueueKeys,
) -> None:
    """archive_attempt cannot number the attempt: it writes nothing, and the retry goes on."""
    task = claimed()
    r.hset(keys.task(task.id), "attempts", "one")
    ran = run(broker.ops.retry(task, 5.0, ERROR))
    assert ran.reply == 1
    state = dump(r, prefix)
    due = int(state[keys.task(task.id)]["due_at"])
    expected = moved(
        ran.before, keys, task.id, source="active", target="scheduled", score=due,
        state="retrying", failures="1", error=ERROR.decode(), due_at=str(due),
    )  # fmt: skip
    expected[keys.retrying] = {task.id: due}
    assert state == expected
