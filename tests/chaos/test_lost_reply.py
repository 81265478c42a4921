"""An enqueue whose reply is lost on the way back: the producer's client retries the call
(redis-py re-sends a command after a timeout); one acknowledged enqueue must still be one
execution, and a finished task must stay finished."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.broker.keys import GlobalKeys
from conveyor.tools.embedded import RedisServer
from tests.chaos import ledger
from tests.chaos.cluster import Deployment, Fleet
from tests.chaos.proxy import ChaosProxy
from tests.chaos.runner import redis_binary, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

PREFIX = "lostreply"


def test_an_enqueue_whose_reply_is_lost_runs_once(tmp_path: Path) -> None:
    server = RedisServer(redis_binary(), appendonly=True).start()
    books = RedisServer(redis_binary()).start()
    proxy = ChaosProxy(server.port)  # only the producer goes through it
    fleet = Fleet(
        Deployment(server.url, PREFIX, books.url, f"{PREFIX}:ledger", 2.0, 60.0, tmp_path), 1, 8, 2
    )
    app = Conveyor(redis_url=proxy.url, prefix=PREFIX, lease_timeout=2.0)
    r = redis.Redis.from_url(server.url)
    try:
        fleet.start()
        worker_key = GlobalKeys(PREFIX).worker(fleet.slots[0].worker_id)
        wait_for(lambda: bool(r.exists(worker_key)), 30, "the worker to start")
        warm = app.enqueue("work", "warm", 0.0)  # the producer's connection is open
        wait_for(lambda: warm.status() == TaskState.SUCCEEDED, 10, "the warm-up task")
        proxy.lose_next_reply()
        victim = app.enqueue("work", "victim", 0.0)  # acknowledged once, after a retry
        wait_for(lambda: victim.status() == TaskState.SUCCEEDED, 10, "the task to succeed")
        # the re-sent enqueue ran before its reply came back, so before enqueue() returned:
        # a task it stored again is waiting or running now, and shows in the ledger once the
        # queue holds nothing (no fixed pause that a slow machine could outlast)
        queue = GlobalKeys(PREFIX).queue("default")
        held = (queue.pending, queue.ready, queue.active, queue.scheduled)
        wait_for(lambda: r.exists(*held) == 0, 30, "the queue to hold nothing")
        record = victim.record()
        with redis.Redis.from_url(books.url) as books_client:
            entries = ledger.read(books_client, f"{PREFIX}:ledger")
        runs = [e for e in entries if e.label == "victim" and e.event == "start"]
    finally:
        app.close()
        r.close()
        fleet.stop()
        proxy.close()
        server.cleanup()
        books.cleanup()
    assert proxy.stats.swallowed_bytes > 0  # the reply was lost indeed
    assert [(e.token, e.attempt) for e in runs] == [(1, 1)], (
        f"one acknowledged enqueue ran {len(runs)} times: the retried enqueue script "
        "stored the same task again after it had run"
    )
    assert record is not None and (record.state, record.token) == (TaskState.SUCCEEDED, 1)
