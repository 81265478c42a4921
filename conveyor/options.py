"""A task's options: one frozen type from the decorator through `message()`, the CLI and
the API down to the record codec.

Adding an option means a field here (plus `DefaultArgs` if a task definition may set a
default for it), its encoding in `broker/records.py`, and the code that acts on it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, TypedDict

from conveyor.backoff import ExceptionTypes
from conveyor.errors import ConfigurationError
from conveyor.names import validate_queue_name

#: How a handler runs: on the event loop, in a thread, or in a child process.
ExecutorKind = Literal["async", "thread", "process"]
DEFAULT_QUEUE = "default"
#: Per-task priority range; higher runs first within a queue.
PRIORITY_RANGE = range(-100, 101)
#: Longest idempotency key.
MAX_IDEMPOTENCY_KEY = 200


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """How one task is enqueued; None means "not set here" (a default applies).

    Args:
        queue: the queue it goes to (default "default").
        priority: -100..100, higher runs first within the queue.
        max_retries: attempts after the first that a failing task gets.
        timeout: seconds an attempt may run before it is stopped and counted failed.
        delay: seconds to wait before it may run.
        eta: when it may run (the later of `delay` and `eta` wins).
        idempotency_key: enqueue at most once per key within the idempotency window.
    """

    queue: str | None = None
    priority: int | None = None
    max_retries: int | None = None
    timeout: float | None = None
    delay: float | None = None
    eta: datetime | None = None
    idempotency_key: str | None = None

    #: Options a task definition fills in at enqueue when the caller did not; the others
    #: are resolved by the worker when the task runs (so a redeploy changes them).
    DEFINITION_DEFAULTS: ClassVar[tuple[str, ...]] = ("queue", "priority")
    NAMES: ClassVar[frozenset[str]]

    def __post_init__(self) -> None:
        """Refuse at once what would otherwise fail later, or be stored and break reads."""
        if self.queue is not None:
            validate_queue_name(self.queue)
        if self.priority is not None and not (
            _is_int(self.priority) and self.priority in PRIORITY_RANGE
        ):
            raise ConfigurationError(
                f"priority must be an integer in -100..100, got {self.priority!r}"
            )
        if self.max_retries is not None and not (
            _is_int(self.max_retries) and self.max_retries >= 0
        ):
            raise ConfigurationError(
                f"max_retries must be an integer >= 0, got {self.max_retries!r}"
            )
        if self.timeout is not None and not (_is_number(self.timeout) and self.timeout > 0):
            raise ConfigurationError(
                f"timeout must be a number of seconds > 0, got {self.timeout!r}"
            )
        if self.delay is not None and not (_is_number(self.delay) and self.delay >= 0):
            raise ConfigurationError(f"delay must be >= 0, got {self.delay!r}")
        if self.eta is not None and not isinstance(self.eta, datetime):
            raise ConfigurationError(f"eta must be a datetime, got {self.eta!r}")
        key = self.idempotency_key
        if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_IDEMPOTENCY_KEY):
            raise ConfigurationError("idempotency_key must be a string of 1-200 characters")

    @classmethod
    def pop_from(cls, kwargs: dict[str, Any], inherited: TaskOptions | None = None) -> TaskOptions:
        """Take the options out of `kwargs` (what remains is the handler's own), filling
        in those unset from `inherited` (a task definition's `inheritable()`)."""
        found = {name: kwargs.pop(name) for name in cls.NAMES & kwargs.keys()} if kwargs else {}
        if not found:  # the common case, answered without building anything
            return inherited or NO_OPTIONS
        if inherited is not None:
            for name in cls.DEFINITION_DEFAULTS:
                if found.get(name) is None:
                    found[name] = getattr(inherited, name)
        return cls(**found)

    def inheritable(self) -> TaskOptions:
        """Only the options an enqueue inherits from these (DEFINITION_DEFAULTS)."""
        return TaskOptions(**{name: getattr(self, name) for name in self.DEFINITION_DEFAULTS})


TaskOptions.NAMES = frozenset(f.name for f in dataclasses.fields(TaskOptions))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    """A finite int or float (not a bool, not NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


#: No option set: every default applies.
NO_OPTIONS = TaskOptions()


class DefaultArgs(TypedDict, total=False):
    """The options a task definition may give defaults for (`@app.task(queue=...)`)."""

    queue: str
    priority: int
    max_retries: int | None
    timeout: float | None


class TaskArgs(DefaultArgs, total=False):
    """Everything `@app.task(...)` takes: the defaults above and how the handler runs."""

    name: str | None
    executor: ExecutorKind | None
    retry_on: ExceptionTypes
    no_retry_on: ExceptionTypes
    dead_letter: bool
