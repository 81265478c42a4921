"""A handler that really holds the GIL, and the app test_heartbeat's worker subprocesses run.

`tests.support.handlers.burn` spins in pure Python, and CPython hands the GIL to other
threads every `sys.getswitchinterval()` (5 ms) during such a loop: it slows the worker's
event loop but does not stop its heartbeats. One long C call that never releases the GIL
(`tests.support.gil.hold_gil`) does stop them, which is the limitation the README documents.

Run as `conveyor worker tests.worker.gil_tasks:app`; URL, prefix and lease come from
CONVEYOR_* variables.
"""

from __future__ import annotations

import os
import time

import orjson
import redis

from conveyor import Conveyor, TaskContext
from tests.support.gil import hold_gil
from tests.support.handlers import ledger_key


def hold_gil_once(seconds: float, url: str, prefix: str, ctx: TaskContext) -> int:
    """Hold the GIL for `seconds` on the first attempt only (a takeover returns at once).

    Logs each start and end in the ledger of `prefix` (see tests.support.handlers); the
    location is passed as arguments because a process-pool child may have been forked
    before the test set any environment variable.
    """
    client = redis.Redis.from_url(url)
    try:
        _log(client, prefix, ctx, "start")
        if ctx.attempt == 1:
            hold_gil(seconds)
        _log(client, prefix, ctx, "end")
    finally:
        client.close()
    return ctx.attempt


def _log(client: redis.Redis, prefix: str, ctx: TaskContext, event: str) -> None:
    entry = {"id": ctx.task_id, "event": event, "pid": os.getpid(), "token": ctx.token,
             "attempt": ctx.attempt, "worker": ctx.worker_id, "time": time.time()}  # fmt: skip
    client.rpush(ledger_key(prefix), orjson.dumps(entry))


app = Conveyor()
app.task(name="hold_gil", executor="thread", max_retries=0)(hold_gil_once)
app.task(name="hold_gil_in_process", executor="process", max_retries=0)(hold_gil_once)
