"""Task definitions (a handler and its options) and handles to enqueued tasks."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from conveyor.backoff import ExceptionTypes, RetryPolicy
from conveyor.context import TaskContext
from conveyor.errors import ConfigurationError, ResultTimeoutError, TaskFailedError
from conveyor.model import TaskRecord, TaskState

if TYPE_CHECKING:
    from conveyor.app import Conveyor

Executor = Literal["async", "thread", "process"]
#: Keyword arguments of `enqueue` that are options, not handler arguments.
ENQUEUE_OPTIONS = frozenset(
    {"queue", "delay", "eta", "priority", "idempotency_key", "max_retries", "timeout"}
)


@dataclass(frozen=True, slots=True)
class Message:
    """One task to enqueue: a name, its arguments and options (see `Conveyor.enqueue`)."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    delay: float | None = None
    eta: datetime | None = None
    priority: int | None = None
    idempotency_key: str | None = None
    max_retries: int | None = None
    timeout: float | None = None


def split_options(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate enqueue options from the handler's own keyword arguments."""
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in ENQUEUE_OPTIONS}
    return options, kwargs


class TaskDefinition:
    """A registered handler; call it to run it here, `enqueue` it to run it on a worker."""

    def __init__(
        self,
        app: Conveyor,
        fn: Callable[..., Any],
        *,
        name: str,
        queue: str,
        max_retries: int | None,
        timeout: float | None,
        priority: int,
        executor: Executor | None,
        retry_on: ExceptionTypes,
        no_retry_on: ExceptionTypes,
        dead_letter: bool,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.queue = queue
        self.max_retries = max_retries
        self.timeout = timeout
        self.priority = priority
        self.is_async = inspect.iscoroutinefunction(fn)
        self.executor: Executor = executor or ("async" if self.is_async else "thread")
        if self.is_async and self.executor == "thread":
            raise ConfigurationError(f"task {name}: an async handler cannot run in a thread")
        self.retry_on = retry_on
        self.no_retry_on = no_retry_on
        self.dead_letter = dead_letter
        self.signature = inspect.signature(fn)
        self.context_parameter = _context_parameter(fn, self.signature)
        #: Where a process-pool child finds the handler again.
        self.import_path = (fn.__module__, fn.__qualname__)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<TaskDefinition {self.name} queue={self.queue} executor={self.executor}>"

    def retry_policy(self, max_retries: int | None) -> RetryPolicy:
        """The policy for one task: a per-task max_retries overrides the definition's."""
        s = self.app.settings
        budget = next(v for v in (max_retries, self.max_retries, s.max_retries) if v is not None)
        return RetryPolicy(
            budget, s.retry_backoff_base, s.retry_backoff_cap, self.retry_on, self.no_retry_on
        )

    def message(self, *args: Any, **kwargs: Any) -> Message:
        """A Message for `Conveyor.enqueue_many`; options are taken from `kwargs`."""
        options, kwargs = split_options(kwargs)
        options.setdefault("queue", self.queue)
        options.setdefault("priority", self.priority)
        return Message(self.name, args, kwargs, **options)

    def enqueue(self, *args: Any, **kwargs: Any) -> TaskHandle:
        """Enqueue a call of this task; returns once Redis has stored it."""
        return self.app.enqueue_many([self.message(*args, **kwargs)])[0]

    async def enqueue_async(self, *args: Any, **kwargs: Any) -> TaskHandle:
        """Like `enqueue`, from asyncio code."""
        return (await self.app.enqueue_many_async([self.message(*args, **kwargs)]))[0]


def _context_parameter(fn: Callable[..., Any], signature: inspect.Signature) -> str | None:
    """The parameter annotated `TaskContext`, if the handler wants one."""
    try:
        hints = inspect.get_annotations(fn, eval_str=True)
    except Exception:  # unresolvable forward references: fall back to the raw text
        hints = inspect.get_annotations(fn)
    for name in signature.parameters:
        hint = hints.get(name)
        if hint is TaskContext or hint == "TaskContext":
            return name
    return None


class TaskHandle:
    """A reference to an enqueued task: its id, and ways to read its state and result."""

    __slots__ = ("app", "enqueued_state", "id", "replayed")

    def __init__(
        self,
        app: Conveyor,
        task_id: str,
        replayed: bool = False,
        enqueued_state: TaskState | None = None,
    ) -> None:
        self.app = app
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
        return self.app.get_record(self.id)

    def status(self) -> TaskState | None:
        """The task's state, or None once its record expired."""
        record = self.record()
        return record.state if record else None

    def cancel(self) -> bool:
        """Cancel the task if it has not started; see `Conveyor.cancel`."""
        return self.app.cancel(self.id)

    def result(self, timeout: float | None = None, poll: float = 0.05) -> Any:
        """Wait for the task to finish and return its result.

        Raises TaskFailedError if it ended dead, failed or cancelled, and
        ResultTimeoutError if it is not finished after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        while True:
            record = self.record()
            if record is not None and record.state.is_terminal:
                return _outcome(record)
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeoutError(f"task {self.id} not finished after {timeout}s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    async def record_async(self) -> TaskRecord | None:
        """Like `record`, from asyncio code."""
        return await self.app.get_record_async(self.id)

    async def result_async(self, timeout: float | None = None, poll: float = 0.05) -> Any:
        """Like `result`, from asyncio code."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = poll
        while True:
            record = await self.record_async()
            if record is not None and record.state.is_terminal:
                return _outcome(record)
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeoutError(f"task {self.id} not finished after {timeout}s")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)


def _outcome(record: TaskRecord) -> Any:
    if record.state is TaskState.SUCCEEDED:
        return record.result
    raise TaskFailedError(record.id, record.state, record.error)
