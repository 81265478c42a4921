"""The Conveyor application: task registry, settings, and the producer API."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Unpack, overload

from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.inspect import AsyncInspector, SyncInspector
from conveyor.broker.steps import drive, drive_async
from conveyor.broker.sync_broker import SyncBroker
from conveyor.canvas import Chain, Chord, FailurePolicy, Group, Workflow
from conveyor.errors import ConfigurationError
from conveyor.middleware import Middleware
from conveyor.model import TaskRecord
from conveyor.names import validate_task_name
from conveyor.options import COMPUTED_OPTIONS, DEFAULT_QUEUE, TaskArgs, TaskOptions
from conveyor.producer import Message, Producer, TaskHandle
from conveyor.schedule import Schedule
from conveyor.schedules import AsyncScheduleBook, ScheduleArgs, ScheduleBook, build_schedule
from conveyor.settings import Settings
from conveyor.task import TaskDefinition
from conveyor.workflow import WorkflowHandle, begin

_NO_PAYLOAD = object()


class Conveyor:
    """A Conveyor application: register tasks with `@app.task`, enqueue them anywhere.

    Args:
        redis_url: Redis to use; defaults to CONVEYOR_REDIS_URL, then a local Redis.
        settings: a complete Settings object (overrides still apply on top of it).
        middleware: hooks around every enqueue and execution, in order (see
            conveyor.middleware); more with `add_middleware`.
        **overrides: any Settings field, e.g. `lease_timeout=10`.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        settings: Settings | None = None,
        middleware: Iterable[Middleware] = (),
        **overrides: Any,
    ) -> None:
        if settings is None:
            settings = Settings.from_env(redis_url=redis_url, **overrides)
        else:
            settings = settings.replace(
                **overrides, **({"redis_url": redis_url} if redis_url else {})
            )
        self.producer = Producer(settings, middleware)
        self.tasks: dict[str, TaskDefinition] = {}
        #: The schedules `@app.periodic` declares; every worker upserts them at start.
        self.declared_schedules: dict[str, Schedule] = {}
        # the level of Conveyor's own loggers; where they go is the application's choice
        # (the CLI sends them to stderr, as text or JSON: settings.log_json)
        logging.getLogger("conveyor").setLevel(settings.log_level.upper())

    @property
    def settings(self) -> Settings:
        """The settings of this app (replacing them takes effect on new connections)."""
        return self.producer.settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self.producer.close()
        self.producer.settings = settings

    @property
    def middleware(self) -> list[Middleware]:
        """The registered middleware, in the order their `before_*` hooks run."""
        return self.producer.middleware

    def add_middleware(self, middleware: Middleware) -> None:
        """Register `middleware` after those registered already (its `before_*` hooks run
        last, its after-hooks first); workers started later run its execution hooks."""
        self.producer.middleware.append(middleware)

    # -- registry --------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[..., Any], /) -> TaskDefinition: ...

    @overload
    def task(
        self, fn: None = None, /, **options: Unpack[TaskArgs]
    ) -> Callable[[Callable[..., Any]], TaskDefinition]: ...

    def task(
        self, fn: Callable[..., Any] | None = None, /, **options: Unpack[TaskArgs]
    ) -> TaskDefinition | Callable[[Callable[..., Any]], TaskDefinition]:
        """Register a handler, async or sync, as a task (use with or without arguments).

        Args:
            name: the name producers use; defaults to the function's `module.qualname`
                (without `<locals>`).
            queue: default queue of its tasks.
            priority: default priority within the queue (-100..100, higher first).
            max_retries: attempts after the first that a failing task gets.
            timeout: seconds an attempt may run before it is stopped and counted failed.
            executor: "async" (coroutines), "thread" (sync default) or "process" (CPU-bound).
            retry_on: only these exceptions are retried (default: all).
            no_retry_on: these exceptions are never retried.
            dead_letter: keep tasks that exhaust their retries in the dead-letter queue
                (state dead); False ends them as failed instead.
            unique, unique_key, unique_window, rate_limit, rate_limit_key,
            rate_limit_burst, concurrency, concurrency_key, group_key: flow control (see
                TaskOptions); keys and the concurrency limit may be functions of the
                task's arguments, called at enqueue.
        """

        def register(func: Callable[..., Any]) -> TaskDefinition:
            rest: dict[str, Any] = dict(options)
            name = rest.pop("name", None)
            default = f"{func.__module__}.{func.__qualname__}".replace("<locals>.", "")
            task_name = validate_task_name(name or default)
            if task_name in self.tasks:
                raise ConfigurationError(f"a task named {task_name!r} is already registered")
            computed = {k: rest.pop(k) for k in COMPUTED_OPTIONS if callable(rest.get(k))}
            defaults = TaskOptions.pop_from(rest, TaskOptions(queue=DEFAULT_QUEUE))
            definition = TaskDefinition(
                self.producer, func, name=task_name, defaults=defaults, computed=computed, **rest
            )
            self.tasks[task_name] = definition
            return definition

        return register(fn) if fn is not None else register

    def periodic(
        self, *, id: str | None = None, **given: Unpack[ScheduleArgs]
    ) -> Callable[[Callable[..., Any] | TaskDefinition], TaskDefinition]:
        """Run a task on a schedule: `@app.periodic(cron="*/5 * * * *", tz="Europe/Paris")`
        or `every=timedelta(minutes=5)`, above `@app.task` (or alone: the function is then
        registered as a task with the default options).

        Every worker of the app upserts the schedule into Redis when it starts (and every
        minute after: the code wins over changes made from outside; pause it instead,
        which is kept), and fires its ticks, each exactly once. A schedule removed from the
        code stays in Redis (and keeps firing) until removed with `conveyor schedules
        remove ID`; its `declared_at` stops moving meanwhile.

        Args:
            id: the schedule's id (default: the task's name); one task may have several.
            **given: see `app.schedules.upsert` (cron, every, tz, args, kwargs, queue,
                priority, max_retries, timeout, misfire, jitter).
        """

        def declare(target: Callable[..., Any] | TaskDefinition) -> TaskDefinition:
            definition = target if isinstance(target, TaskDefinition) else self.task(target)
            schedule = build_schedule(id or definition.name, definition, self.tasks, **given)
            if schedule.id in self.declared_schedules:
                raise ConfigurationError(f"a schedule with id {schedule.id!r} is declared already")
            self.declared_schedules[schedule.id] = schedule
            return definition

        return declare

    # -- producing -------------------------------------------------------------------

    def message(self, name: str, *args: Any, payload: Any = _NO_PAYLOAD, **kwargs: Any) -> Message:
        """A Message for task `name`, registered here or not (producers need not import it).

        `payload=` passes one positional argument, as the seeds' REST API does.
        """
        if payload is not _NO_PAYLOAD:
            args = (payload, *args)
        definition = self.tasks.get(name)
        if definition is not None:
            return definition.message(*args, **kwargs)
        return Message(name, args, kwargs, TaskOptions.pop_from(kwargs))

    @overload
    def enqueue(self, name: Workflow, /, *, on_failure: FailurePolicy = ...) -> WorkflowHandle: ...

    @overload
    def enqueue(
        self, name: str, *args: Any, payload: Any = _NO_PAYLOAD, **kwargs: Any
    ) -> TaskHandle: ...

    def enqueue(
        self, name: str | Workflow, *args: Any, payload: Any = _NO_PAYLOAD, **kwargs: Any
    ) -> TaskHandle | WorkflowHandle:
        """Enqueue task `name` with these arguments and options; returns its handle.

        Options (see TaskOptions): queue, delay (seconds), eta (datetime), priority,
        idempotency_key, max_retries, timeout. Raises BrokerUnavailableError if Redis
        cannot be reached.

        Given a workflow (`chain`, `group`, `chord`) instead, stores it and starts its
        first tasks; returns its WorkflowHandle. `on_failure` ("stop" or "continue") says
        what a task that fails for good does to it (see docs/workflows.md).
        """
        if isinstance(name, Chain | Group | Chord):
            workflow_id, procedure = begin(self.producer, name, **kwargs)
            drive(procedure, self.sync_broker().run)
            return WorkflowHandle(self.producer, workflow_id)
        return self.enqueue_many([self.message(name, *args, payload=payload, **kwargs)])[0]

    @overload
    async def enqueue_async(
        self, name: Workflow, /, *, on_failure: FailurePolicy = ...
    ) -> WorkflowHandle: ...

    @overload
    async def enqueue_async(
        self, name: str, *args: Any, payload: Any = _NO_PAYLOAD, **kwargs: Any
    ) -> TaskHandle: ...

    async def enqueue_async(
        self, name: str | Workflow, *args: Any, payload: Any = _NO_PAYLOAD, **kwargs: Any
    ) -> TaskHandle | WorkflowHandle:
        """Like `enqueue`, from asyncio code."""
        if isinstance(name, Chain | Group | Chord):
            workflow_id, procedure = begin(self.producer, name, **kwargs)
            await drive_async(procedure, self.async_broker().run)
            return WorkflowHandle(self.producer, workflow_id)
        message = self.message(name, *args, payload=payload, **kwargs)
        return (await self.enqueue_many_async([message]))[0]

    def enqueue_many(self, messages: Iterable[Message]) -> list[TaskHandle]:
        """Enqueue many tasks, of any queues, in one round trip; handles in the same order."""
        return self.producer.enqueue_many(messages)

    async def enqueue_many_async(self, messages: Iterable[Message]) -> list[TaskHandle]:
        """Like `enqueue_many`, from asyncio code; concurrent calls share round trips."""
        return await self.producer.enqueue_many_async(messages)

    # -- reading and cancelling ------------------------------------------------------

    @property
    def inspector(self) -> SyncInspector:
        """Read and administer queues, tasks, dead letters and workers."""
        return self.producer.inspector()

    def async_inspector(self) -> AsyncInspector:
        """The Inspector for asyncio code (bound to the running event loop)."""
        return self.producer.async_inspector()

    @property
    def schedules(self) -> ScheduleBook:
        """Upsert, list, pause, resume, remove and run now the periodic schedules."""
        return ScheduleBook(self)

    def async_schedules(self) -> AsyncScheduleBook:
        """The schedules, for asyncio code."""
        return AsyncScheduleBook(self)

    def get_record(self, task_id: str) -> TaskRecord | None:
        """The record of a task, or None if unknown, expired or not a task id at all."""
        return self.inspector.task(task_id)

    async def get_record_async(self, task_id: str) -> TaskRecord | None:
        """Like `get_record`, from asyncio code."""
        return await self.async_inspector().task(task_id)

    def cancel(self, task_id: str) -> bool:
        """Cancel a task. One not yet started (pending, scheduled, retrying) is cancelled
        at once; a running one becomes `cancelling` until its worker stopped it, then it
        is `cancelled` (see docs/progress-and-cancel.md).

        Returns True once cancelled or cancelling; raises TaskConflictError if it is
        finished, TaskNotFoundError if unknown.
        """
        self.inspector.cancel(task_id)
        return True

    async def cancel_async(self, task_id: str) -> bool:
        """Like `cancel`, from asyncio code."""
        await self.async_inspector().cancel(task_id)
        return True

    # -- connections -----------------------------------------------------------------

    def sync_broker(self) -> SyncBroker:
        """The shared synchronous broker (thread-safe connection pool)."""
        return self.producer.sync_broker()

    def async_broker(self) -> AsyncBroker:
        """The asyncio broker of the running event loop (clients are bound to one loop)."""
        return self.producer.async_broker()

    def close(self) -> None:
        """Close the synchronous connection pool."""
        self.producer.close()

    async def aclose(self) -> None:
        """Close the running loop's asyncio connection pool."""
        await self.producer.aclose()
