"""dead_letter.lua: a fenced last failure ends the task, kept as a dead letter or failed."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
import redis

from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from tests.broker.conftest import Claimed, Run, StaleClaim, Unchanged
from tests.broker.seed import (
    assert_ttl,
)
from tests.support.keyspace import archived, dump, moved, pop_history

ERROR = orjson.dumps({"type": "ValueError", "message": "broken", "traceback": "..."})
#: Distinct retentions, so a script that picks the wrong one is caught.
FAILED_RETENTION, DEAD_RETENTION = 3600.0, 7200.0


@pytest.fixture
def broker(broker_with: Callable[..., SyncBroker]) -> SyncBroker:
    return broker_with(failed_retention=FAILED_RETENTION, dead_retention=DEAD_RETENTION)


def test_a_kept_task_becomes_a_dead_letter(
    claimed: Claimed, run: Run, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task = claimed()
    ran = run(broker.ops.dead_letter(task, "timeout", ERROR, keep=True))
    assert ran.reply == 1
    state = dump(r, prefix)
    died = int(state[keys.task(task.id)]["finished_at"])
    assert died == ran.window.now
    last = archived(ran.before, keys.task(task.id), died, "dead", ERROR)
    assert pop_history(state, keys.task(task.id)) == {1: last}
    assert state == moved(
        ran.before, keys, task.id, source="active", target="dead", score=died,
        state="dead", reason="timeout", error=ERROR.decode(), finished_at=str(died), failures="1",
    )  # fmt: skip
    assert_ttl(r, keys.task(task.id), DEAD_RETENTION)


def test_a_task_not_kept_ends_failed_outside_the_dead_set(
    claimed: Claimed, run: Run, broker: SyncBroker, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task = claimed()
    ran = run(broker.ops.dead_letter(task, "error", ERROR, keep=False))
    assert ran.reply == 1
    now = ran.window.now
    expected = moved(
        ran.before, keys, task.id, source="active",
        state="failed", reason="error", error=ERROR.decode(), finished_at=now, failures="1",
    )  # fmt: skip
    state = dump(r, prefix)
    last = archived(ran.before, keys.task(task.id), now, "failed", ERROR)
    assert pop_history(state, keys.task(task.id)) == {1: last}
    assert state == expected  # no dead set at all
    assert_ttl(r, keys.task(task.id), FAILED_RETENTION)


@pytest.mark.parametrize("keep", [True, False], ids=["dead", "failed"])
def test_dead_letter_refuses_a_stale_token(
    keep: bool, stale: StaleClaim, unchanged: Unchanged, broker: SyncBroker
) -> None:
    with unchanged():
        reply = broker.execute([broker.ops.dead_letter(stale.task, "error", ERROR, keep=keep)])
    assert reply == [0]
