"""The Conveyor application: task registry, settings, and the producer API."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, overload

from conveyor import metrics, serializers
from conveyor.backoff import ExceptionTypes
from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.keys import validate_queue_name, validate_task_name
from conveyor.broker.records import EnqueueResult, NewTask
from conveyor.broker.sync_broker import SyncBroker
from conveyor.errors import ConfigurationError, TaskConflictError, TaskNotFoundError
from conveyor.ids import is_task_id, new_task_id
from conveyor.model import TaskRecord, TaskState, to_millis
from conveyor.settings import Settings
from conveyor.task import Executor, Message, TaskDefinition, TaskHandle, split_options

DEFAULT_QUEUE = "default"
#: Per-task priority range; higher runs first within a queue.
PRIORITY_RANGE = range(-100, 101)
_NO_PAYLOAD = object()
_STATES = {state.value: state for state in TaskState}  # a dict lookup: Enum() costs more


class Conveyor:
    """A Conveyor application: register tasks with `@app.task`, enqueue them anywhere.

    Args:
        redis_url: Redis to use; defaults to CONVEYOR_REDIS_URL, then a local Redis.
        settings: a complete Settings object (overrides still apply on top of it).
        **overrides: any Settings field, e.g. `lease_timeout=10`.
    """

    def __init__(
        self, redis_url: str | None = None, *, settings: Settings | None = None, **overrides: Any
    ) -> None:
        if settings is None:
            settings = Settings.from_env(redis_url=redis_url, **overrides)
        else:
            settings = settings.replace(
                **overrides, **({"redis_url": redis_url} if redis_url else {})
            )
        self.settings = settings
        self.tasks: dict[str, TaskDefinition] = {}
        self._sync: SyncBroker | None = None
        self._async: dict[asyncio.AbstractEventLoop, AsyncBroker] = {}
        self._known_queues: set[str] = set()
        self._lock = threading.Lock()

    # -- registry --------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[..., Any]) -> TaskDefinition: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        max_retries: int | None = None,
        timeout: float | None = None,
        priority: int = 0,
        executor: Executor | None = None,
        retry_on: ExceptionTypes = (),
        no_retry_on: ExceptionTypes = (),
        dead_letter: bool = True,
    ) -> Callable[[Callable[..., Any]], TaskDefinition]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        max_retries: int | None = None,
        timeout: float | None = None,
        priority: int = 0,
        executor: Executor | None = None,
        retry_on: ExceptionTypes = (),
        no_retry_on: ExceptionTypes = (),
        dead_letter: bool = True,
    ) -> TaskDefinition | Callable[[Callable[..., Any]], TaskDefinition]:
        """Register a handler, async or sync, as a task (use with or without arguments).

        Args:
            name: the name producers use; defaults to the function's `module.qualname`
                (without `<locals>`).
            queue: default queue of its tasks.
            max_retries: attempts after the first that a failing task gets.
            timeout: seconds an attempt may run before it is stopped and counted failed.
            priority: default priority within the queue (-100..100, higher first).
            executor: "async" (coroutines), "thread" (sync default) or "process" (CPU-bound).
            retry_on: only these exceptions are retried (default: all).
            no_retry_on: these exceptions are never retried.
            dead_letter: keep tasks that exhaust their retries in the dead-letter queue
                (state dead); False ends them as failed instead.
        """

        def register(func: Callable[..., Any]) -> TaskDefinition:
            default = f"{func.__module__}.{func.__qualname__}".replace("<locals>.", "")
            task_name = validate_task_name(name or default)
            if task_name in self.tasks:
                raise ConfigurationError(f"a task named {task_name!r} is already registered")
            _check_priority(priority)
            definition = TaskDefinition(
                self,
                func,
                name=task_name,
                queue=validate_queue_name(queue),
                max_retries=max_retries,
                timeout=timeout,
                priority=priority,
                executor=executor,
                retry_on=tuple(retry_on),
                no_retry_on=tuple(no_retry_on),
                dead_letter=dead_letter,
            )
            self.tasks[task_name] = definition
            return definition

        return register(fn) if fn is not None else register

    # -- producing -------------------------------------------------------------------

    def message(self, name: str, *args: Any, payload: Any = _NO_PAYLOAD, **kwargs: Any) -> Message:
        """A Message for task `name`, registered here or not (producers need not import it).

        `payload=` passes one positional argument, as the seeds' REST API does.
        """
        options, kwargs = split_options(kwargs)
        if payload is not _NO_PAYLOAD:
            args = (payload, *args)
        definition = self.tasks.get(name)
        if definition is not None:
            options.setdefault("queue", definition.queue)
            options.setdefault("priority", definition.priority)
        return Message(name, args, kwargs, **options)

    def enqueue(
        self, name: str, *args: Any, payload: Any = _NO_PAYLOAD, **kwargs: Any
    ) -> TaskHandle:
        """Enqueue task `name` with these arguments and options; returns its handle.

        Options: queue, delay (seconds), eta (datetime), priority, idempotency_key,
        max_retries, timeout. Raises BrokerUnavailableError if Redis cannot be reached.
        """
        return self.enqueue_many([self.message(name, *args, payload=payload, **kwargs)])[0]

    async def enqueue_async(
        self, name: str, *args: Any, payload: Any = _NO_PAYLOAD, **kwargs: Any
    ) -> TaskHandle:
        """Like `enqueue`, from asyncio code."""
        message = self.message(name, *args, payload=payload, **kwargs)
        return (await self.enqueue_many_async([message]))[0]

    def enqueue_many(self, messages: Iterable[Message]) -> list[TaskHandle]:
        """Enqueue many tasks, of any queues, in one round trip; handles in the same order."""
        tasks = [self.encode(m) for m in messages]
        if not tasks:
            return []
        broker = self.sync_broker()
        new_queues = self._new_queues(tasks)
        results = broker.run(broker.ops.enqueue(tasks, new_queues))
        return self._enqueued(tasks, new_queues, results)

    async def enqueue_many_async(self, messages: Iterable[Message]) -> list[TaskHandle]:
        """Like `enqueue_many`, from asyncio code; concurrent calls share round trips."""
        tasks = [self.encode(m) for m in messages]
        if not tasks:
            return []
        broker = self.async_broker()
        new_queues = self._new_queues(tasks)
        results = await broker.shared.enqueue(tasks, new_queues)
        return self._enqueued(tasks, new_queues, results)

    def encode(self, message: Message) -> NewTask:
        """Validate and encode a message (raises before anything is sent)."""
        validate_task_name(message.name)
        queue = validate_queue_name(message.queue or DEFAULT_QUEUE)
        priority = 0 if message.priority is None else message.priority
        _check_priority(priority)
        delay = message.delay or 0.0
        if message.eta is not None:
            delay = max(delay, message.eta.timestamp() - time.time())
        if delay < 0:
            raise ConfigurationError(f"delay must be >= 0, got {delay}")
        key = message.idempotency_key
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 200):
            raise ConfigurationError("idempotency_key must be a string of 1-200 characters")
        return NewTask(
            id=new_task_id(queue),
            queue=queue,
            name=message.name,
            args=serializers.dumps(list(message.args)) if message.args else None,
            kwargs=serializers.dumps(message.kwargs) if message.kwargs else None,
            delay_ms=to_millis(delay),
            priority=priority,
            idempotency_key=key,
            max_retries=message.max_retries,
            timeout=message.timeout,
        )

    def _new_queues(self, tasks: Sequence[NewTask]) -> list[str]:
        return sorted({t.queue for t in tasks} - self._known_queues)

    def _enqueued(
        self, tasks: Sequence[NewTask], new_queues: list[str], results: list[EnqueueResult]
    ) -> list[TaskHandle]:
        self._known_queues.update(new_queues)
        fresh = [(t.queue, t.name) for t, r in zip(tasks, results, strict=True) if not r.replayed]
        metrics.count_enqueued(fresh)
        return [TaskHandle(self, r.id, r.replayed, _STATES.get(r.state)) for r in results]

    # -- reading and cancelling ------------------------------------------------------

    def get_record(self, task_id: str) -> TaskRecord | None:
        """The record of a task, or None if unknown, expired or not a task id at all."""
        if not is_task_id(task_id):
            return None
        broker = self.sync_broker()
        return broker.run(broker.ops.fetch_record(task_id))

    async def get_record_async(self, task_id: str) -> TaskRecord | None:
        """Like `get_record`, from asyncio code."""
        if not is_task_id(task_id):
            return None
        broker = self.async_broker()
        return await broker.shared.run(broker.ops.fetch_record(task_id))

    def cancel(self, task_id: str) -> bool:
        """Cancel a pending, scheduled or retrying task.

        Returns True once cancelled; raises TaskConflictError if it is active or finished,
        TaskNotFoundError if unknown.
        """
        if not is_task_id(task_id):
            raise TaskNotFoundError(f"no task {task_id!r}: not a task id")
        broker = self.sync_broker()
        return _cancelled(task_id, broker.run(broker.ops.cancel(task_id)))

    async def cancel_async(self, task_id: str) -> bool:
        """Like `cancel`, from asyncio code."""
        if not is_task_id(task_id):
            raise TaskNotFoundError(f"no task {task_id!r}: not a task id")
        broker = self.async_broker()
        return _cancelled(task_id, await broker.shared.run(broker.ops.cancel(task_id)))

    # -- connections -----------------------------------------------------------------

    def sync_broker(self) -> SyncBroker:
        """The shared synchronous broker (thread-safe connection pool)."""
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    self._sync = SyncBroker(self.settings)
        return self._sync

    def async_broker(self) -> AsyncBroker:
        """The asyncio broker of the running event loop (clients are bound to one loop)."""
        loop = asyncio.get_running_loop()
        broker = self._async.get(loop)
        if broker is None:
            for stale in [old for old in self._async if old.is_closed()]:
                del self._async[stale]
            broker = self._async[loop] = AsyncBroker(self.settings)
        return broker

    def close(self) -> None:
        """Close the synchronous connection pool."""
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        """Close the running loop's asyncio connection pool."""
        broker = self._async.pop(asyncio.get_running_loop(), None)
        if broker is not None:
            await broker.close()


def _check_priority(priority: int) -> None:
    if not isinstance(priority, int) or priority not in PRIORITY_RANGE:
        raise ConfigurationError(f"priority must be an integer in -100..100, got {priority!r}")


def _cancelled(task_id: str, outcome: tuple[bool, str]) -> bool:
    cancelled, state = outcome
    if cancelled:
        return True
    if not state:
        raise TaskNotFoundError(f"no task {task_id}")
    raise TaskConflictError(task_id, state, "cancel")
