"""A task's options: one frozen type from the decorator through `message()`, the CLI and
the API down to the record codec.

Adding an option means a field here (plus `DefaultArgs` if a task definition may set a
default for it), its encoding in `broker/records.py`, and the code that acts on it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal, TypedDict

from conveyor.backoff import ExceptionTypes
from conveyor.errors import ConfigurationError
from conveyor.flow import UNIQUE_MODES, Rate, UniqueMode, validate_key
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
        unique: True (or "skip"), "replace" or "throttle": at most one live task per
            unique key (see `conveyor.flow.UniqueMode`).
        unique_key: the unique key (default: the arguments); scoped by the task's name.
        unique_window: seconds a "throttle" holds its key.
        rate_limit: at most so many starts per period, e.g. "100/s", "10/m", "5/h".
        rate_limit_key: whose limit it is (default: the task's name).
        rate_limit_burst: starts allowed at once before the rate applies (default 1).
        concurrency: at most so many of its key's tasks run at once.
        concurrency_key: whose slots they are (default: the task's name).
        group_key: its fair group: claims go round the groups of a queue.
        durable: the enqueue returns only once a replica has the task too (Redis WAIT
            for `Settings.min_replicas`, at least 1), so a failover cannot lose it.
    """

    queue: str | None = None
    priority: int | None = None
    max_retries: int | None = None
    timeout: float | None = None
    delay: float | None = None
    eta: datetime | None = None
    idempotency_key: str | None = None
    unique: bool | UniqueMode | None = None
    unique_key: str | None = None
    unique_window: float | None = None
    rate_limit: str | None = None
    rate_limit_key: str | None = None
    rate_limit_burst: int | None = None
    concurrency: int | None = None
    concurrency_key: str | None = None
    group_key: str | None = None
    durable: bool | None = None

    #: Options a task definition fills in at enqueue when the caller did not; the others
    #: are resolved by the worker when the task runs (so a redeploy changes them).
    #: The flow-control options: a definition may give them, or compute them from the
    #: arguments (see `TaskDefinition`).
    FLOW: ClassVar[tuple[str, ...]] = (
        "unique", "unique_key", "unique_window", "rate_limit", "rate_limit_key",
        "rate_limit_burst", "concurrency", "concurrency_key", "group_key",
    )  # fmt: skip
    DEFINITION_DEFAULTS: ClassVar[tuple[str, ...]] = ("queue", "priority", "durable", *FLOW)
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
        if self.durable is not None and not isinstance(self.durable, bool):
            raise ConfigurationError(f"durable must be true or false, got {self.durable!r}")
        key = self.idempotency_key
        if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_IDEMPOTENCY_KEY):
            raise ConfigurationError("idempotency_key must be a string of 1-200 characters")
        self._validate_flow()

    def _validate_flow(self) -> None:
        for name in ("unique_key", "rate_limit_key", "concurrency_key", "group_key"):
            if getattr(self, name) is not None:
                validate_key(name, getattr(self, name))
        self._validate_unique()
        if self.rate_limit is not None:
            Rate.parse(self.rate_limit)
        for name in ("rate_limit_burst", "concurrency"):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and value >= 1):
                raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")
        for detail, option in _DETAILS:
            if getattr(self, detail) is not None and not getattr(self, option):
                raise ConfigurationError(f"{detail} is set but {option} is not")

    def _validate_unique(self) -> None:
        unique, window = self.unique, self.unique_window
        if unique is not None and not isinstance(unique, bool) and unique not in UNIQUE_MODES:
            modes = ", ".join(UNIQUE_MODES)
            raise ConfigurationError(f"unique must be a bool or one of {modes}, got {unique!r}")
        if window is not None and not (_is_number(window) and window > 0):
            raise ConfigurationError(f"unique_window must be seconds > 0, got {window!r}")
        if unique == "throttle" and window is None:
            raise ConfigurationError("unique='throttle' needs unique_window (seconds)")

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
#: Flow options that mean something only with another one set.
_DETAILS = (
    ("unique_key", "unique"),
    ("unique_window", "unique"),
    ("rate_limit_key", "rate_limit"),
    ("rate_limit_burst", "rate_limit"),
    ("concurrency_key", "concurrency"),
)


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
    durable: bool


#: A flow key computed from a task's arguments: called with them at enqueue.
KeyFunction = Callable[..., str]
#: Flow options a definition may give as a function of the arguments.
COMPUTED_OPTIONS = ("unique_key", "rate_limit_key", "concurrency", "concurrency_key", "group_key")


class TaskArgs(DefaultArgs, total=False):
    """Everything `@app.task(...)` takes: the defaults above, flow control (a key or a
    concurrency limit may be a function of the arguments), and how the handler runs."""

    unique: bool | UniqueMode
    unique_key: str | KeyFunction
    unique_window: float
    rate_limit: str
    rate_limit_key: str | KeyFunction
    rate_limit_burst: int
    concurrency: int | Callable[..., int]
    concurrency_key: str | KeyFunction
    group_key: str | KeyFunction

    name: str | None
    executor: ExecutorKind | None
    retry_on: ExceptionTypes
    no_retry_on: ExceptionTypes
    dead_letter: bool
