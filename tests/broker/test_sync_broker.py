"""The sync broker's held connection: reused by single calls, safe across threads, forks,
lost connections and a flushed script cache."""

from __future__ import annotations

import os
import threading

import redis

from conveyor import Conveyor
from conveyor.broker.keys import QueueKeys


def _connections(r: redis.Redis) -> int:
    return sum(1 for c in r.client_list() if c.get("name") == "conveyor")


def test_single_calls_share_one_connection(app: Conveyor, r: redis.Redis) -> None:
    app.enqueue("t", 0)  # the first also registers the queue, in a pipeline from the pool
    before = _connections(r)
    handles = [app.enqueue("t", i) for i in range(50)]
    assert [h.enqueued_state for h in handles] == ["pending"] * 50
    assert _connections(r) == before


def test_a_killed_connection_is_replaced_and_nothing_is_stored_twice(
    app: Conveyor, r: redis.Redis, keys: QueueKeys
) -> None:
    app.enqueue("t", 0)  # registers the queue over a pooled connection
    app.enqueue("t", 1)  # opens the held connection
    assert r.client_kill_filter(_type="normal", skipme=True) >= 1
    handle = app.enqueue("t", 2)
    assert handle.record() is not None
    assert r.zcard(keys.pending) == 3


def test_a_flushed_script_cache_is_reloaded(app: Conveyor, r: redis.Redis) -> None:
    app.enqueue("t", 0)
    r.script_flush()
    assert app.enqueue("t", 1).enqueued_state == "pending"


def test_concurrent_threads_all_enqueue(app: Conveyor, keys: QueueKeys, r: redis.Redis) -> None:
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for i in range(100):
                app.enqueue("t", i)
        except BaseException as exc:  # surfaced below: a thread cannot fail the test
            errors.append(exc)

    threads = [threading.Thread(target=produce) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert r.zcard(keys.pending) == 800


def test_a_forked_child_opens_its_own_connection(
    app: Conveyor, keys: QueueKeys, r: redis.Redis
) -> None:
    app.enqueue("t", "registers the queue")
    app.enqueue("t", "opens the held connection")
    pid = os.fork()
    # parent and child enqueue at once: on a shared socket they would read each other's replies
    if pid == 0:
        stored = False
        try:
            stored = all(app.enqueue("t", i).record() is not None for i in range(300))
        finally:
            os._exit(0 if stored else 1)  # never back into pytest
    handles = [app.enqueue("t", i) for i in range(300)]
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert all(h.record() is not None for h in handles)
    assert r.zcard(keys.pending) == 602


def test_close_then_use_again(app: Conveyor) -> None:
    app.enqueue("t", 0)
    app.sync_broker().close()
    assert app.enqueue("t", 1).enqueued_state == "pending"
