"""The worker's end of a running task's context: progress and checkpoints go to Redis
through it, and a cancel comes in through it."""

from __future__ import annotations

import asyncio

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.records import ClaimedTask
from conveyor.context import on_loop_error


class TaskLink:
    """One running attempt's link to the worker (a `context.Reporter`)."""

    def __init__(self, broker: AsyncBroker, task: ClaimedTask, *, interruptible: bool) -> None:
        self.broker = broker
        self.task = task
        self.loop = asyncio.get_running_loop()
        #: set when the task is cancelled: a thread handler reads it as `ctx.cancelled` (a
        #: plain flag: one thread writes it, others only read it; an Event per task cost
        #: 2 µs of every task's run)
        self.cancelled = False
        #: the handler runs on the loop or in a child process: cancelling its asyncio task
        #: stops it; a thread handler cannot be stopped, only told
        self.interruptible = interruptible

    async def report(self, progress: bytes | None, checkpoint: bytes | None) -> bool:
        """Store progress and/or a checkpoint, fenced by the attempt's token."""
        op = self.broker.ops.report_progress(self.task, progress, checkpoint)
        return await self.broker.run(op)

    def report_blocking(self, progress: bytes | None, checkpoint: bytes | None) -> bool:
        """`report` from a sync handler's thread; refused on the loop (it would deadlock)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise on_loop_error()
        reply = asyncio.run_coroutine_threadsafe(self.report(progress, checkpoint), self.loop)
        return reply.result()
