"""replay_edited.lua: one dead letter goes back to pending with the payload an operator
corrected, as a fresh task; anything that is not a dead letter is refused as is."""

from __future__ import annotations

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.scripts import Arg, Call
from conveyor.broker.sync_broker import SyncBroker
from conveyor.ids import new_task_id
from tests.broker.conftest import Run, TaskIn, Unchanged
from tests.broker.seed import claim_one
from tests.support.keyspace import dump, moved

ARGS = b'[2,"fixed"]'
KWARGS = b'{"retries":0}'


def replay_edited(broker: SyncBroker, keys: QueueKeys, task_id: str) -> Call:
    """The script call DeadLetterAdmin.replay_edited makes, with ARGS and KWARGS."""
    script_keys = [keys.dead, keys.pending, keys.signal, keys.task(task_id), keys.events]
    argv: list[Arg] = [task_id, ARGS, KWARGS]
    return Call.script_call(broker.ops.scripts["replay_edited"], script_keys, argv)


def test_a_dead_letter_is_revived_with_the_new_payload(
    task_in: TaskIn, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    task_id = task_in("dead", priority=4)
    ran = run(replay_edited(broker, keys, task_id))
    assert ran.reply == 1
    # budgets reset, the reason and end gone, its error and history kept for the operator
    assert dump(r, prefix) == moved(
        ran.before, keys, task_id, source="dead", target="pending",
        score=ran.window.pending(4), wake=True, drop=("reason", "finished_at"),
        state="pending", failures="0", crashes="0", args=ARGS.decode(), kwargs=KWARGS.decode(),
    )  # fmt: skip
    assert r.pttl(keys.task(task_id)) == -1  # kept for good again, as a live task is
    again = claim_one(broker)
    assert (again.id, again.args, again.kwargs, again.failures) == (task_id, ARGS, KWARGS, 0)


@pytest.mark.parametrize("state", ["pending", "scheduled", "retrying", "active", "failed"])
def test_a_task_that_is_not_a_dead_letter_is_refused_and_its_payload_untouched(
    state: str, task_in: TaskIn, broker: SyncBroker, keys: QueueKeys, unchanged: Unchanged
) -> None:
    task_id = task_in(state)
    with unchanged():
        assert broker.execute([replay_edited(broker, keys, task_id)]) == [0]


def test_an_unknown_task_is_refused(
    app: Conveyor, broker: SyncBroker, keys: QueueKeys, unchanged: Unchanged
) -> None:
    app.enqueue("job")
    with unchanged():
        assert broker.execute([replay_edited(broker, keys, new_task_id("default"))]) == [0]


def test_a_dead_letter_whose_record_is_gone_is_refused_and_left_listed(
    task_in: TaskIn, broker: SyncBroker, r: redis.Redis, keys: QueueKeys, unchanged: Unchanged
) -> None:
    """No record to revive: no half-made task without a name; the entry stays to delete."""
    task_id = task_in("dead")
    r.delete(keys.task(task_id))
    with unchanged():
        assert broker.execute([replay_edited(broker, keys, task_id)]) == [0]
