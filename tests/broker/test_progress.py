"""progress.lua: a running attempt's progress and checkpoint are kept, and its lease renewed,
only under its token and while it is active: a late writer never overwrites its successor."""

from __future__ import annotations

import json

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys
from conveyor.broker.sync_broker import SyncBroker
from conveyor.model import to_millis
from tests.broker.conftest import Run, Unchanged
from tests.broker.seed import STALE_WAYS, Stale, claim_one, lose_lease
from tests.support.keyspace import dump


def test_progress_and_checkpoint_are_kept_and_the_lease_renewed(
    app: Conveyor, broker: SyncBroker, run: Run, r: redis.Redis, prefix: str, keys: QueueKeys
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    r.zadd(keys.active, {task.id: 1}, xx=True)  # about to expire: the renewal must show
    progress = b'{"fraction":0.4,"message":"4 of 10"}'
    ran = run(broker.ops.report_progress(task, progress, b'{"offset":4}'))
    assert ran.reply is True
    expected = ran.before
    expected[keys.active][task.id] = ran.window.at(to_millis(broker.settings.lease_timeout))
    state = dump(r, prefix)
    stored = json.loads(state[keys.task(task.id)].pop("progress"))
    assert stored == {"fraction": 0.4, "message": "4 of 10", "at": ran.window.now}
    assert state[keys.task(task.id)].pop("checkpoint") == '{"offset":4}'
    assert state == expected
    record = app.get_record(task.id)
    assert record is not None and record.checkpoint == {"offset": 4}
    assert record.progress is not None and record.progress["message"] == "4 of 10"


def test_each_report_leaves_the_other_as_it_was(
    app: Conveyor, broker: SyncBroker, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    assert broker.run(broker.ops.report_progress(task, None, b'{"offset":1}'))
    assert broker.run(broker.ops.report_progress(task, b'{"fraction":0.1}', None))
    assert r.hget(keys.task(task.id), "checkpoint") == b'{"offset":1}'
    assert broker.run(broker.ops.report_progress(task, None, b"null"))  # cleared
    assert json.loads(r.hget(keys.task(task.id), "progress") or b"")["fraction"] == 0.1
    record = app.get_record(task.id)
    assert record is not None and record.checkpoint is None


@pytest.mark.parametrize("how", STALE_WAYS)
def test_a_writer_that_lost_its_lease_is_refused(
    how: Stale, app: Conveyor, broker: SyncBroker, unchanged: Unchanged
) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    lose_lease(broker, task, how)
    with unchanged():
        report = broker.ops.report_progress(task, b'{"fraction":1.0}', b'"mine"')
        assert broker.run(report) is False


def test_the_next_claim_hands_over_the_checkpoint(app: Conveyor, broker: SyncBroker) -> None:
    app.enqueue("job")
    task = claim_one(broker)
    assert broker.run(broker.ops.report_progress(task, None, b'{"offset":7}'))
    assert broker.execute([broker.ops.requeue(task, crashed=True)]) == [b"pending"]
    again = claim_one(broker, "w2")
    assert again.id == task.id and again.checkpoint == b'{"offset":7}'
