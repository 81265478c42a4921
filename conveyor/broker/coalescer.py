"""Concurrent operations of one event loop share round trips to Redis.

A producer serving many requests at once (the REST API, an asyncio app) would otherwise pay
one round trip, and redis-py's per-call overhead, for every enqueue. Here the first operation
goes out at once; operations issued while it is in flight wait for it and then go out
together, in pipelines of up to `BATCH` operations; when a full batch waits, a second
pipeline goes out beside the first, so that while Redis runs one the callers of the other
resume and fill the next: Python and Redis work side by side. A lone caller pays no delay,
and many callers share the cost.
Enqueues to one queue that wait together are merged into one script call, so Redis too runs
one script for the lot instead of one per caller.

Each operation keeps its own calls and replies: an error reply fails only the operation it
belongs to, and a lost connection fails every operation of that round trip (none of them
can know whether Redis applied it, exactly as for a direct call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from conveyor.broker.cluster import AnyAsyncTransport
from conveyor.broker.ops import Op, Operations
from conveyor.broker.records import EnqueueResult, NewTask
from conveyor.broker.transport import first_error
from conveyor.errors import BrokerFullError

T = TypeVar("T")

#: Most pipelines in flight at once.
IN_FLIGHT = 2
#: Most operations per pipeline: a burst of callers fills every pipeline in flight.
BATCH = 32


@dataclass(frozen=True, slots=True)
class _Request:
    """One caller's operation, or its tasks to enqueue (merged with other callers')."""

    future: asyncio.Future[Any]
    op: Op[Any] | None = None
    tasks: Sequence[NewTask] = ()
    new_queues: Sequence[str] = ()


class Coalescer:
    """Runs operations over `transport` in pipelines, batching those that queue up."""

    def __init__(self, transport: AnyAsyncTransport, ops: Operations) -> None:
        self.transport = transport
        self.ops = ops
        self._waiting: list[_Request] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def run(self, op: Op[T]) -> T:
        """Execute `op`, in the next round trip, and decode its replies."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        return await self._submit(_Request(future, op=op))  # type: ignore[no-any-return]

    async def enqueue(
        self, tasks: Sequence[NewTask], new_queues: Sequence[str]
    ) -> list[EnqueueResult]:
        """Enqueue `tasks`, in the next round trip, in one script call with those of the
        other callers waiting for it; results in the order of `tasks`."""
        future: asyncio.Future[list[EnqueueResult]] = asyncio.get_running_loop().create_future()
        return await self._submit(_Request(future, tasks=tasks, new_queues=new_queues))  # type: ignore[no-any-return]

    def _submit(self, request: _Request) -> asyncio.Future[Any]:
        self._waiting.append(request)
        # a second pipeline only for a full batch: a trickle of callers (the API's) makes
        # fewer, fuller pipelines through one; a burst (an asyncio producer's) fills two
        flushing = len(self._flushers)
        if not flushing or (flushing < IN_FLIGHT and len(self._waiting) >= BATCH):
            self._flushers.add(asyncio.create_task(self._flush()))
        return request.future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                # a caller cancelled before its turn came sends nothing
                batch = [r for r in self._waiting[:BATCH] if not r.future.done()]
                del self._waiting[:BATCH]
                await self._send(batch)
        finally:
            self._flushers.discard(asyncio.current_task())
            if not self._flushers:  # only left if the last flusher itself was cancelled
                for request in self._waiting:
                    request.future.cancel()
                self._waiting = []

    async def _send(self, batch: list[_Request]) -> None:
        parts = [(r.op, _deliver_to([r])) for r in batch if r.op is not None]
        for requests in _by_queue(r for r in batch if r.op is None):
            tasks = [task for r in requests for task in r.tasks]
            new_queues = sorted({queue for r in requests for queue in r.new_queues})
            parts.append((self.ops.enqueue(tasks, new_queues), _deliver_to(requests)))
        calls = [call for op, _ in parts for call in op.calls]
        try:
            replies = await self.transport.execute(calls, raise_errors=False)
        except asyncio.CancelledError:
            for request in batch:
                request.future.cancel()
            raise
        except Exception as exc:
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        start = 0
        for op, deliver in parts:
            mine = replies[start : start + len(op.calls)]
            start += len(op.calls)
            try:
                if not op.reads_errors:
                    first_error(mine)
                deliver(op.decode(mine), None)
            except Exception as exc:
                deliver(None, exc)


def _by_queue(enqueues: Iterable[_Request]) -> Iterable[list[_Request]]:
    """Enqueues grouped to merge: those to one queue together (an error reply then fails
    the callers of that queue only); one spanning queues alone."""
    groups: dict[str | int, list[_Request]] = {}
    for request in enqueues:
        queues = {task.queue for task in request.tasks}
        groups.setdefault(queues.pop() if len(queues) == 1 else id(request), []).append(request)
    return groups.values()


def _own(error: Exception, request: _Request) -> Exception:
    """The error as one caller of a merged enqueue sees it: of the tasks stored before
    Redis ran out of memory, those it sent."""
    if not isinstance(error, BrokerFullError) or request.op is not None:
        return error
    mine = {task.id for task in request.tasks}
    stored = tuple(i for i in error.stored if i in mine)
    return BrokerFullError(stored, len(request.tasks), error.memory)


def _deliver_to(requests: list[_Request]) -> Callable[[Any, Exception | None], None]:
    """Hands an operation's result (or error) to its caller; a merged enqueue's results
    are split among its callers, each getting as many as it sent tasks."""

    def deliver(result: Any, error: Exception | None) -> None:
        start = 0
        for request in requests:
            first, start = start, start + len(request.tasks)
            if request.future.done():  # its caller was cancelled
                continue
            if error is not None:
                request.future.set_exception(_own(error, request))
            elif request.op is not None:
                request.future.set_result(result)
            else:
                request.future.set_result(result[first:start])

    return deliver
