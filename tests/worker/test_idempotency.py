"""Idempotency keys across producer processes, and the end of their window.

A cross-cutting behaviour (producers in several processes, the enqueue script, the key's
expiry) tested end to end, so it has a file of its own rather than a component's."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import time
import traceback
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

import redis

from conveyor import Conveyor, TaskState
from conveyor.settings import Settings
from tests.support.keyspace import dump
from tests.support.worker import wait_until_sync

PRODUCERS = 4
PER_PRODUCER = 5


def produce(fields: dict[str, Any], key: str, barrier: Barrier, out: Queue[Any]) -> None:
    """Child process: its own app on the same settings; enqueue with `key` after the barrier."""
    try:
        app = Conveyor(settings=Settings(**fields))
        app.enqueue("warmup")  # connect and load the script before the race
        barrier.wait(30)
        handles = [app.enqueue("charge", 10, idempotency_key=key) for _ in range(PER_PRODUCER)]
        out.put([(h.id, h.replayed) for h in handles])
        app.close()
    except BaseException:
        out.put(traceback.format_exc())
        raise


def test_concurrent_producer_processes_create_one_task(
    settings: Settings, r: redis.Redis, prefix: str
) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PRODUCERS)
    out: Queue[Any] = context.Queue()
    fields = dataclasses.asdict(settings)
    processes = [
        context.Process(target=produce, args=(fields, "order-42", barrier, out))
        for _ in range(PRODUCERS)
    ]
    for process in processes:
        process.start()
    try:
        replies = [out.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
    assert all(isinstance(reply, list) for reply in replies), replies
    results = [item for reply in replies for item in reply]
    ids = {task_id for task_id, _ in results}
    assert len(results) == PRODUCERS * PER_PRODUCER
    assert len(ids) == 1, ids
    assert sum(not replayed for _, replayed in results) == 1  # one created, all others replayed
    [task_id] = ids
    keys = dump(r, prefix)
    charges = [k for k, v in keys.items() if ":task:" in k and v.get("name") == "charge"]
    assert charges == [f"{prefix}:{{default}}:task:{task_id}"]
    pending_ids = {f"default:{e}" for e in keys[f"{prefix}:{{default}}:ready"]}
    assert task_id in pending_ids and len(pending_ids) == 1 + PRODUCERS  # + the warmups


def test_within_the_window_the_same_key_replays_the_task(
    app_with: Callable[..., Conveyor], r: redis.Redis
) -> None:
    window_ms = 60_000  # no machine, however loaded, takes that long between two enqueues
    app = app_with(idempotency_window=window_ms / 1000)
    began = time.monotonic()
    first = app.enqueue("charge", 10, idempotency_key="order-7")
    again = app.enqueue("charge", 10, idempotency_key="order-7")
    marker = app.sync_broker().ops.queue_keys("default").idempotency("order-7")
    ttl = int(r.pttl(marker))
    elapsed_ms = math.ceil((time.monotonic() - began) * 1000)
    assert (again.id, again.replayed, first.replayed) == (first.id, True, False)
    # the marker was set for the whole window within the time measured around the calls
    assert window_ms - elapsed_ms - 1 <= ttl <= window_ms


def test_after_the_window_the_same_key_enqueues_a_new_task(
    app_with: Callable[..., Conveyor], r: redis.Redis
) -> None:
    app = app_with(idempotency_window=0.3)
    first = app.enqueue("charge", 10, idempotency_key="order-7")
    marker = app.sync_broker().ops.queue_keys("default").idempotency("order-7")
    ttl = int(r.pttl(marker))
    assert ttl == -2 or 0 < ttl <= 300  # set to expire with the window (or expired already)
    # however long that took, the window ends: Redis expires the marker
    wait_until_sync(lambda: not r.exists(marker), 10, "the idempotency window to end")
    later = app.enqueue("charge", 10, idempotency_key="order-7")
    assert later.id != first.id and not later.replayed and not first.replayed
    assert first.status() == later.status() == TaskState.PENDING  # both tasks exist
