"""The app of tests that kill the worker's Redis: its handler keeps its ledger in another.

`tests.support.handlers` logs each execution in the Redis the worker uses, so a test that
kills and restarts that Redis would lose (or fail to write) the very evidence of what ran.
Here the ledger's URL travels with each task and names a server the test never faults;
the entries are those of `tests.support.handlers`, so `read_ledger` reads them.

Run as `conveyor worker tests.support.outside:app`; the prefix comes from CONVEYOR_PREFIX.
"""

from __future__ import annotations

import os
import time
from functools import cache

import orjson
import redis

from conveyor import Conveyor, TaskContext
from tests.support.handlers import ledger_key

#: The app the worker subprocesses of such a test run.
OUTSIDE_APP = "tests.support.outside:app"

app = Conveyor()


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _log(ledger_url: str, ctx: TaskContext, event: str) -> None:
    entry = {"id": ctx.task_id, "event": event, "pid": os.getpid(), "token": ctx.token,
             "attempt": ctx.attempt, "worker": ctx.worker_id}  # fmt: skip
    _client(ledger_url).rpush(ledger_key(os.environ["CONVEYOR_PREFIX"]), orjson.dumps(entry))


@app.task(name="record_outside", max_retries=0)
def record_outside(ledger_url: str, label: str, ctx: TaskContext, seconds: float = 0.0) -> str:
    """Logs its start and end, in the ledger at `ledger_url`, around a sleep of `seconds`."""
    _log(ledger_url, ctx, "start")
    time.sleep(seconds)
    _log(ledger_url, ctx, "end")
    return label
