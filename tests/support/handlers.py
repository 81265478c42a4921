"""Plain handler functions, importable by child processes and worker subprocesses.

Each records its executions in a ledger list (`<prefix>:ledger`) through its own
connection, so a test can count starts and ends per task, per process and per token.
"""

from __future__ import annotations

import asyncio
import os
import time
from functools import cache

import orjson
import redis

from conveyor import Retry, TaskContext


@cache
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def ledger_key(prefix: str) -> str:
    """Where the handlers log their executions."""
    return f"{prefix}:ledger"


def _log(ctx: TaskContext, event: str) -> None:
    url = os.environ["CONVEYOR_REDIS_URL"]
    prefix = os.environ["CONVEYOR_PREFIX"]
    entry = {"id": ctx.task_id, "event": event, "pid": os.getpid(), "token": ctx.token,
             "attempt": ctx.attempt, "worker": ctx.worker_id}  # fmt: skip
    _client(url).rpush(ledger_key(prefix), orjson.dumps(entry))


def record(label: str, ctx: TaskContext, seconds: float = 0.0) -> str:
    """Logs its start and end around a sleep of `seconds`."""
    _log(ctx, "start")
    time.sleep(seconds)
    _log(ctx, "end")
    return label


async def record_async(label: str, ctx: TaskContext, seconds: float = 0.0) -> str:
    """Async twin of `record`."""
    _log(ctx, "start")
    await asyncio.sleep(seconds)
    _log(ctx, "end")
    return label


def crash(label: str, ctx: TaskContext) -> None:
    """Kills its own process mid-task, as a segfault or the OOM killer would."""
    _log(ctx, "start")
    os._exit(17)


def burn(seconds: float) -> int:
    """Keeps a CPU busy in pure-Python arithmetic for about `seconds` (CPython still
    switches threads every 5 ms; tests/worker/gil_tasks.py holds the GIL for real)."""
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        count += 1
    return count


def square(x: int) -> int:
    """A trivial CPU task."""
    return x * x


def current_span_ids() -> list[str]:
    """The trace and span ids current where it runs: in a process child, the span it
    continues."""
    from opentelemetry import trace

    current = trace.get_current_span().get_span_context()
    return [f"{current.trace_id:032x}", f"{current.span_id:016x}"]


def die_in_child() -> None:
    """Kills the process it runs in (a child, under executor="process")."""
    os._exit(9)


def read_ledger(r: redis.Redis, prefix: str) -> list[dict[str, object]]:
    """Every ledger entry, oldest first."""
    return [orjson.loads(e) for e in r.lrange(ledger_key(prefix), 0, -1)]


def nap_in_child(seconds: float, pid_file: str) -> None:
    """Writes its process id to `pid_file`, then sleeps: a process handler to cancel."""
    with open(pid_file, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(seconds)


def resume(ctx: TaskContext, hold: float = 60.0) -> object:
    """A first attempt saves a checkpoint and progress, then holds (to be killed); the next
    returns what it found in `ctx.last_checkpoint`."""
    if ctx.last_checkpoint is None:
        ctx.checkpoint({"done": 3})
        ctx.progress(0.3, "3 of 10")
        _log(ctx, "start")
        time.sleep(hold)
    return ctx.last_checkpoint


def probe_context(ctx: TaskContext) -> dict[str, object]:
    """What a context offers in a child process: a first attempt reports progress and a
    checkpoint through its pipe, then asks for a retry; the next returns what it found."""
    if ctx.last_checkpoint is None:
        ctx.progress(0.5, f"in process {os.getpid()}")
        ctx.checkpoint({"pid": os.getpid()})
        raise Retry(delay=0)
    try:
        ctx.progress(1.5)
    except ValueError as exc:
        refused = str(exc)
    return {"checkpoint": ctx.last_checkpoint, "cancelled": ctx.cancelled, "refused": refused}


def report_late(gate: str, ctx: TaskContext) -> None:
    """Waits for the file `gate`, reports progress, and writes how the report was answered
    to `<gate>.out`."""
    deadline = time.monotonic() + 30
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        ctx.progress(0.9)
        answer = "accepted"
    except Exception as exc:
        answer = type(exc).__name__
    with open(gate + ".out", "w") as out:
        out.write(answer)
