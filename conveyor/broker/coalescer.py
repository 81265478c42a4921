"""Concurrent operations of one event loop share round trips to Redis.

A producer serving many requests at once (the REST API, an asyncio app) would otherwise pay
one round trip, and redis-py's per-call overhead, for every enqueue. Here the first operation
goes out at once; operations issued while it is in flight wait for it and then go out
together, in one pipeline. A lone caller pays no delay, and many callers share the cost.

Each operation keeps its own calls and replies: an error reply fails only the operation it
belongs to, and a lost connection fails every operation of that round trip (none of them
can know whether Redis applied it, exactly as for a direct call).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor.broker.connection import first_error

if TYPE_CHECKING:
    from conveyor.broker.async_broker import AsyncBroker
    from conveyor.broker.ops import Op

T = TypeVar("T")


class Coalescer:
    """Runs operations on `broker`, one pipeline at a time, batching those that queue up."""

    def __init__(self, broker: AsyncBroker) -> None:
        self.broker = broker
        self._waiting: list[tuple[Op[Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, op: Op[T]) -> T:
        """Execute `op`, in the next round trip, and decode its replies."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((op, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                # a caller cancelled before its turn came sends nothing
                batch = [(op, future) for op, future in self._waiting if not future.done()]
                self._waiting = []
                await self._send(batch)
        finally:
            self._flusher = None
            for _, future in self._waiting:  # only left if this task itself was cancelled
                future.cancel()
            self._waiting = []

    async def _send(self, batch: list[tuple[Op[Any], asyncio.Future[Any]]]) -> None:
        calls = [call for op, _ in batch for call in op.calls]
        try:
            replies = await self.broker.execute(calls, raise_errors=False)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for op, future in batch:
            mine = replies[start : start + len(op.calls)]
            start += len(op.calls)
            if future.done():  # its caller was cancelled
                continue
            try:
                first_error(mine)
                future.set_result(op.decode(mine))
            except Exception as exc:
                future.set_exception(exc)
