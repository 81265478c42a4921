"""Producing: messages in, handles out, over the Redis connections a process shares.

The layer under the `Conveyor` facade: task definitions and handles call down into it,
never back up into the facade.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor import metrics
from conveyor import middleware as hooks
from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.inspect import AsyncInspector, SyncInspector
from conveyor.broker.records import EnqueueResult, NewTask
from conveyor.broker.sync_broker import SyncBroker
from conveyor.errors import ResultTimeoutError, TaskFailedError, TaskNotFoundError
from conveyor.middleware import Middleware
from conveyor.model import TaskRecord, TaskState
from conveyor.options import NO_OPTIONS, TaskOptions
from conveyor.settings import Settings

_STATES = {state.value: state for state in TaskState}  # a dict lookup: Enum() costs more


@dataclass(frozen=True, slots=True)
class Message:
    """One task to enqueue: a task name, the handler's arguments, and the options."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: TaskOptions = NO_OPTIONS
    #: a W3C `traceparent` to store with the task, the parent of its execution's span
    #: (the REST API passes its request's; `TracingMiddleware` sets the active span's)
    trace: str | None = None


class Producer:
    """Validates, encodes and enqueues messages; owns the sync broker and one async broker
    per event loop (clients are bound to one loop), and an Inspector on each."""

    def __init__(self, settings: Settings, middleware: Iterable[Middleware] = ()) -> None:
        self.settings = settings
        #: run around every enqueue, in order (see conveyor.middleware); an empty list
        #: costs nothing per task
        self.middleware: list[Middleware] = list(middleware)
        self._sync: tuple[SyncBroker, SyncInspector] | None = None
        self._async: dict[asyncio.AbstractEventLoop, tuple[AsyncBroker, AsyncInspector]] = {}
        self._known_queues: set[str] = set()
        self._lock = threading.Lock()

    # -- enqueueing ------------------------------------------------------------------

    def enqueue_many(self, messages: Iterable[Message]) -> list[TaskHandle]:
        """Enqueue many tasks, of any queues, in one round trip; handles in the same order."""
        tasks = [self.encode(m) for m in messages]
        if not tasks:
            return []
        if not self.middleware:  # the fast path: no hooks, no contexts
            return self._send(tasks)
        contexts = hooks.prepare(self.middleware, tasks)
        try:
            handles = self._send([c.task for c in contexts])
        except BaseException as exc:
            hooks.enqueue_failed(self.middleware, contexts, exc)
            raise
        hooks.enqueued(self.middleware, contexts, handles)
        return handles

    def _send(self, tasks: list[NewTask]) -> list[TaskHandle]:
        broker = self.sync_broker()
        new_queues = self._new_queues(tasks)
        results = broker.run(broker.ops.enqueue(tasks, new_queues))
        return self._enqueued(tasks, new_queues, results)

    async def enqueue_many_async(self, messages: Iterable[Message]) -> list[TaskHandle]:
        """Like `enqueue_many`, from asyncio code; concurrent calls share round trips."""
        tasks = [self.encode(m) for m in messages]
        if not tasks:
            return []
        if not self.middleware:
            return await self._send_async(tasks)
        contexts = hooks.prepare(self.middleware, tasks)
        try:
            handles = await self._send_async([c.task for c in contexts])
        except BaseException as exc:
            hooks.enqueue_failed(self.middleware, contexts, exc)
            raise
        hooks.enqueued(self.middleware, contexts, handles)
        return handles

    async def _send_async(self, tasks: list[NewTask]) -> list[TaskHandle]:
        broker = self.async_broker()
        new_queues = self._new_queues(tasks)
        results = await broker.shared.enqueue(tasks, new_queues)
        return self._enqueued(tasks, new_queues, results)

    def encode(self, message: Message) -> NewTask:
        """Validate and encode a message (raises before anything is sent)."""
        return NewTask.build(
            message.name, message.args, message.kwargs, message.options,
            self.settings.shards, trace=message.trace,
        )  # fmt: skip

    def _new_queues(self, tasks: Sequence[NewTask]) -> list[str]:
        return sorted({t.queue for t in tasks} - self._known_queues)

    def _enqueued(
        self, tasks: Sequence[NewTask], new_queues: list[str], results: list[EnqueueResult]
    ) -> list[TaskHandle]:
        self._known_queues.update(new_queues)
        fresh = [(t.queue, t.name) for t, r in zip(tasks, results, strict=True) if not r.replayed]
        metrics.count_enqueued(fresh)
        return [TaskHandle(self, r.id, r.replayed, _STATES.get(r.state)) for r in results]

    # -- connections -----------------------------------------------------------------

    def sync_broker(self) -> SyncBroker:
        """The shared synchronous broker (thread-safe connection pool)."""
        return self._sync_pair()[0]

    def inspector(self) -> SyncInspector:
        """The Inspector on the synchronous broker."""
        return self._sync_pair()[1]

    def async_broker(self) -> AsyncBroker:
        """The asyncio broker of the running event loop."""
        return self._async_pair()[0]

    def async_inspector(self) -> AsyncInspector:
        """The Inspector on the running event loop's broker."""
        return self._async_pair()[1]

    def _sync_pair(self) -> tuple[SyncBroker, SyncInspector]:
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    broker = SyncBroker(self.settings)
                    self._sync = broker, SyncInspector(broker)
        return self._sync

    def _async_pair(self) -> tuple[AsyncBroker, AsyncInspector]:
        loop = asyncio.get_running_loop()
        pair = self._async.get(loop)
        if pair is None:
            for stale in [old for old in self._async if old.is_closed()]:
                del self._async[stale]
            broker = AsyncBroker(self.settings)
            pair = self._async[loop] = broker, AsyncInspector(broker)
        return pair

    def close(self) -> None:
        """Close the synchronous connection pool."""
        if self._sync is not None:
            self._sync[0].close()
            self._sync = None

    async def aclose(self) -> None:
        """Close the running loop's asyncio connection pool."""
        pair = self._async.pop(asyncio.get_running_loop(), None)
        if pair is not None:
            await pair[0].close()


class TaskHandle:
    """A reference to an enqueued task: its id, and ways to read its state and result."""

    __slots__ = ("enqueued_state", "id", "producer", "replayed")

    def __init__(
        self,
        producer: Producer,
        task_id: str,
        replayed: bool = False,
        enqueued_state: TaskState | None = None,
    ) -> None:
        self.producer = producer
        self.id = task_id
        #: True when an idempotency key matched and this is the first task's handle.
        self.replayed = replayed
        #: The state Redis stored when `enqueue` returned (None when not known).
        self.enqueued_state = enqueued_state

    def __repr__(self) -> str:
        return f"<TaskHandle {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def record(self) -> TaskRecord | None:
        """The task's record, or None once it expired."""
        return self.producer.inspector().task(self.id)

    def status(self) -> TaskState | None:
        """The task's state, or None once its record expired."""
        record = self.record()
        return record.state if record else None

    def cancel(self) -> bool:
        """Cancel the task (a running one is stopped by its worker); see `Conveyor.cancel`."""
        self.producer.inspector().cancel(self.id)
        return True

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the task to finish and return its result.

        Waits on the queue's event stream (a blocking read), not by reading the record in
        a loop. Raises TaskFailedError if it ended dead, failed or cancelled,
        TaskNotFoundError if its record is unknown or expired, and ResultTimeoutError if
        it is not finished after `timeout` seconds.
        """
        return _outcome(self.id, timeout, self.producer.inspector().wait_finished(self.id, timeout))

    async def record_async(self) -> TaskRecord | None:
        """Like `record`, from asyncio code."""
        return await self.producer.async_inspector().task(self.id)

    async def cancel_async(self) -> bool:
        """Like `cancel`, from asyncio code."""
        await self.producer.async_inspector().cancel(self.id)
        return True

    async def result_async(self, timeout: float | None = None) -> Any:
        """Like `result`, from asyncio code."""
        record = await self.producer.async_inspector().wait_finished(self.id, timeout)
        return _outcome(self.id, timeout, record)


def _outcome(task_id: str, timeout: float | None, record: TaskRecord | None) -> Any:
    """The result of a task whose wait ended with `record`, or the error it calls for."""
    if record is None:
        raise TaskNotFoundError(f"no task {task_id!r}: unknown, or its record expired")
    if record.state is TaskState.SUCCEEDED:
        return record.result
    if record.state.is_terminal:
        raise TaskFailedError(record.id, record.state, record.error)
    raise ResultTimeoutError(f"task {task_id} not finished after {timeout}s")
