"""`conveyor demo`: a producer and a worker on an embedded Redis, in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from conveyor.app import Conveyor
from conveyor.model import TaskRecord, TaskState
from conveyor.producer import TaskHandle
from conveyor.tools.embedded import RedisServer
from conveyor.worker.runtime import Worker

DATA_DIR = Path(".conveyor") / "redis"


@contextlib.contextmanager
def embedded_redis(url: str | None, echo: Callable[[str], object] = print) -> Iterator[str]:
    """Use `url` if given, else run a redis-server with its data in ./.conveyor/redis."""
    if url:
        yield url
        return
    with RedisServer(data_dir=DATA_DIR, appendonly=True) as server:
        echo(
            f"embedded Redis {server.version()} on {server.url} "
            f"({server.redis_binary().where}; data in {DATA_DIR})"
        )
        yield server.url


def run(redis_url: str | None, bulk: int, echo: Callable[[str], object] = print) -> None:
    """Enqueue one task of each kind plus `bulk` in one round trip, process them all with a
    worker in this process, and report each outcome through `echo`."""
    with embedded_redis(redis_url, echo) as url:
        os.environ["CONVEYOR_REDIS_URL"] = url  # the demo app (and its child processes) read it
        from conveyor.tools import demo_tasks as tasks

        app = tasks.app
        app.settings = app.settings.replace(redis_url=url, retry_backoff_base=0.1)
        handles = {
            "async email": tasks.send_welcome_email.enqueue(to="ada@example.com", name="Ada"),
            "sync resize": tasks.resize_image.enqueue("cat.png", width=320),
            "process checksum": tasks.checksum.enqueue("conveyor", rounds=200_000),
            "retried webhook": tasks.flaky_webhook.enqueue("https://example.com/hook"),
            "delayed 1s": tasks.resize_image.enqueue("dog.png", width=64, delay=1),
            "by name": app.enqueue("email-notification", payload="user@example.com"),
            "poison pill": tasks.poison.enqueue({"bad": True}),
        }
        started = time.perf_counter()
        batch = app.enqueue_many(tasks.notify.message(f"user{i}@example.com") for i in range(bulk))
        echo(f"enqueued {bulk} tasks in one round trip in {time.perf_counter() - started:.3f}s")
        asyncio.run(_work_until_done(app, [*handles.values(), *batch]))
        # the worker has stopped: its last log lines are out before the table starts
        _flush_logs()
        echo("")
        for label, handle in handles.items():
            record = handle.record()
            assert record is not None
            echo(f"{label:<17} {record.state:<10} attempts={record.attempts}  {outcome(record)}")
        done = sum(1 for h in batch if h.status() == "succeeded")
        echo(f"bulk: {done}/{bulk} succeeded")
        poison = handles["poison pill"].record()
        if poison is not None and poison.error:
            error = poison.error
            echo(f"dead letter {poison.id}: {error['type']}: {error['message']}")
        app.close()


def outcome(record: TaskRecord) -> str:
    """The result column: a success's result, else the error and why the task ended."""
    if record.state == TaskState.SUCCEEDED:
        return str(record.result)
    error = record.error or {}
    what = f"{error.get('type', 'Error')}: {error.get('message', '')}" if error else "no error"
    return f"{what} (reason: {record.reason})"


def _flush_logs() -> None:
    """Write out what the log handlers and stderr hold, so no line lands in the table."""
    for handler in logging.getLogger().handlers + logging.getLogger("conveyor").handlers:
        handler.flush()
    sys.stderr.flush()


async def _work_until_done(app: Conveyor, handles: list[TaskHandle], limit: float = 60) -> None:
    """Run a worker in this process until every handle is finished (or `limit` passes)."""
    worker = Worker(app, "emails,default", concurrency=50, processes=2)
    running = asyncio.create_task(worker.run())
    deadline = time.monotonic() + limit
    pending = handles
    while pending and time.monotonic() < deadline and not running.done():
        await asyncio.sleep(0.2)
        records = [await h.record_async() for h in pending]
        pending = [
            h for h, r in zip(pending, records, strict=True) if r and not r.state.is_terminal
        ]
    worker.stop()
    await running
    await app.aclose()
