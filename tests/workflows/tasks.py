"""The tasks of the workflow proofs (`conveyor worker tests.workflows.tasks:app`).

Each run of a callback or of a chain's last step appends its task id to a list beside the
keyspace, so a proof can count how many distinct tasks ran a node (a task killed mid-run
runs again under the same id: at-least-once per task, once per node).
"""

from __future__ import annotations

import os
import time
from functools import cache

import redis

from conveyor import Conveyor, TaskContext

app = Conveyor()


def runs_key(prefix: str, what: str) -> str:
    """The list of the task ids that ran `what` (a callback, a chain's last step)."""
    return f"{prefix}:wf-runs:{what}"


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10)


def _note(what: str, ctx: TaskContext) -> None:
    client = _client(os.environ["CONVEYOR_REDIS_URL"])
    client.rpush(runs_key(os.environ["CONVEYOR_PREFIX"], what), ctx.task_id)


@app.task(name="wf.child")
def child(i: int, seconds: float = 0.0) -> int:
    """A chord's member: its index squared, after `seconds`."""
    time.sleep(seconds)
    return i * i


@app.task(name="wf.collect")
def collect(results: list[int], ctx: TaskContext) -> list[int]:
    """A chord's callback: its input, noted as one run."""
    _note("collect", ctx)
    return results


@app.task(name="wf.add")
def add(total: int, n: int, ctx: TaskContext, seconds: float = 0.0, last: bool = False) -> int:
    """A chain's step: the previous total plus `n`, after `seconds`."""
    time.sleep(seconds)
    if last:
        _note("last", ctx)
    return total + n


@app.task(name="wf.start")
def start(n: int) -> int:
    """A chain's first step: `n`."""
    return n
