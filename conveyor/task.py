"""Task definitions: a handler, its default options, and how it runs."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from conveyor.backoff import ExceptionTypes, RetryPolicy
from conveyor.context import TaskContext
from conveyor.errors import ConfigurationError
from conveyor.options import ExecutorKind, TaskOptions
from conveyor.producer import Message, Producer, TaskHandle


class TaskDefinition:
    """A registered handler; call it to run it here, `enqueue` it to run it on a worker."""

    def __init__(
        self,
        producer: Producer,
        fn: Callable[..., Any],
        *,
        name: str,
        defaults: TaskOptions,
        executor: ExecutorKind | None = None,
        retry_on: ExceptionTypes = (),
        no_retry_on: ExceptionTypes = (),
        dead_letter: bool = True,
        computed: Mapping[str, Callable[..., Any]] | None = None,
    ) -> None:
        self.producer = producer
        self.fn = fn
        self.name = name
        #: Options its tasks get unless the enqueue sets them (see TaskOptions).
        self.defaults = defaults
        self._inherited = defaults.inheritable()
        #: Flow options computed from each task's arguments (COMPUTED_OPTIONS).
        self.computed = dict(computed or {})
        self.queue = defaults.queue
        self.is_async = inspect.iscoroutinefunction(fn)
        self.executor: ExecutorKind = executor or ("async" if self.is_async else "thread")
        if self.is_async and self.executor == "thread":
            raise ConfigurationError(f"task {name}: an async handler cannot run in a thread")
        self.retry_on = tuple(retry_on)
        self.no_retry_on = tuple(no_retry_on)
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
        s = self.producer.settings
        budget = next(
            v for v in (max_retries, self.defaults.max_retries, s.max_retries) if v is not None
        )
        return RetryPolicy(
            budget, s.retry_backoff_base, s.retry_backoff_cap, self.retry_on, self.no_retry_on
        )

    def message(self, *args: Any, **kwargs: Any) -> Message:
        """A Message for `enqueue_many`; options (see TaskOptions) are taken from `kwargs`."""
        if not self.computed:
            return Message(self.name, args, kwargs, TaskOptions.pop_from(kwargs, self._inherited))
        given = {name: kwargs.pop(name) for name in TaskOptions.NAMES & kwargs.keys()}
        return Message(self.name, args, kwargs, self._completed(given, args, kwargs))

    def with_flow(
        self, options: TaskOptions, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> TaskOptions:
        """`options` completed with this definition's flow control (given or computed from
        the arguments) where they leave it unset: for messages built elsewhere (schedules)."""
        given = {name: getattr(options, name) for name in TaskOptions.NAMES}
        return self._completed(given, args, kwargs)

    def _completed(
        self, given: dict[str, Any], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> TaskOptions:
        """The options `given`, then those computed from the handler's arguments, then the
        definition's defaults, checked together (a computed limit may be what a given key
        needs)."""
        for option, compute in self.computed.items():
            if given.get(option) is None:
                given[option] = compute(*args, **kwargs)
        return TaskOptions.pop_from(given, self._inherited)

    def enqueue(self, *args: Any, **kwargs: Any) -> TaskHandle:
        """Enqueue a call of this task; returns once Redis has stored it."""
        return self.producer.enqueue_many([self.message(*args, **kwargs)])[0]

    async def enqueue_async(self, *args: Any, **kwargs: Any) -> TaskHandle:
        """Like `enqueue`, from asyncio code."""
        return (await self.producer.enqueue_many_async([self.message(*args, **kwargs)]))[0]


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
