"""Tasks that wait for each other or for the test, so a test can require an order of events
(two worker processes running at once, a kill before a task's end) rather than hope the OS
schedules it so (`tests.support.rendezvous:app`: the subprocess app of tests/support/tasks.py
with `meet` and `hold` added)."""

from __future__ import annotations

import os
import time

import orjson
import redis

from conveyor import TaskContext
from tests.support import handlers
from tests.support.tasks import app


def meet(label: str, ctx: TaskContext, parties: int = 2, timeout: float = 60.0) -> str:
    """Wait until `parties` runs of `meet` have begun, then log a run as `record` does.

    A worker process that runs one task at a time holds one run while it waits, so the
    runs only meet once `parties` processes have each taken one.
    """
    client = redis.Redis.from_url(os.environ["CONVEYOR_REDIS_URL"])
    key = f"{os.environ['CONVEYOR_PREFIX']}:meet"
    deadline = time.monotonic() + timeout
    arrived = int(client.incr(key))
    while arrived < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{arrived} of {parties} runs of meet arrived in {timeout}s")
        time.sleep(0.01)
        arrived = int(client.get(key) or 0)
    client.close()
    return handlers.record(label, ctx)


def gate_key(prefix: str) -> str:
    """The key whose presence lets every run of `hold` finish."""
    return f"{prefix}:gate"


def hold(label: str, ctx: TaskContext, timeout: float = 60.0) -> str:
    """Log a start as `record` does, wait until the test sets the gate key, log the end.

    A run's end then comes when the test says, not after a time it hopes is long enough
    (say, for the worker to be killed first).
    """
    prefix = os.environ["CONVEYOR_PREFIX"]
    client = redis.Redis.from_url(os.environ["CONVEYOR_REDIS_URL"])
    entry = {"id": ctx.task_id, "pid": os.getpid(), "token": ctx.token,
             "attempt": ctx.attempt, "worker": ctx.worker_id}  # fmt: skip
    client.rpush(handlers.ledger_key(prefix), orjson.dumps({**entry, "event": "start"}))
    deadline = time.monotonic() + timeout
    while not client.exists(gate_key(prefix)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate stayed shut for {timeout}s")
        time.sleep(0.01)
    client.rpush(handlers.ledger_key(prefix), orjson.dumps({**entry, "event": "end"}))
    client.close()
    return label


app.task(name="meet", max_retries=0)(meet)
app.task(name="hold", max_retries=0)(hold)
