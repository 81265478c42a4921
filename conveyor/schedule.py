"""Periodic schedules: what to enqueue, when, and what to do about ticks no worker fired.

A `Schedule` is the definition (validated whole before anything is stored); a
`ScheduleInfo` is a definition with its state in Redis (paused, next and last run), as
the Inspector reports it to the CLI, the API and the dashboard.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import orjson

from conveyor import serializers
from conveyor.errors import ConfigurationError, SerializationError
from conveyor.model import utc_iso
from conveyor.names import validate_task_name
from conveyor.options import DEFAULT_QUEUE, TaskOptions
from conveyor.timing import Timing

#: What a worker does about ticks that came due while no worker could fire them:
#: "skip" fires none of them (only a tick at most MISFIRE_GRACE late), "once" fires the
#: latest of them, "all" fires each of them, up to MAX_CATCH_UP.
Misfire = Literal["skip", "once", "all"]
MISFIRES: tuple[str, ...] = get_args(Misfire)
#: Schedule ids: part of a key and of each tick's idempotency key.
SCHEDULE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
#: Longest jitter (seconds): a day.
MAX_JITTER = 86_400.0
#: Where the schedule came from: a worker declaring `@app.periodic`, or an operator.
Origin = Literal["code", "api"]


def validate_schedule_id(schedule_id: str) -> str:
    """Return `schedule_id` if valid, else raise ConfigurationError."""
    if not isinstance(schedule_id, str) or not SCHEDULE_ID.fullmatch(schedule_id):
        raise ConfigurationError(
            f"invalid schedule id {schedule_id!r}: use 1-128 of letters, digits, '_', '.', '-'"
        )
    return schedule_id


@dataclass(frozen=True, slots=True)
class Schedule:
    """A task enqueued at each tick of a timing, with fixed arguments and options.

    Args:
        id: names the schedule (upserting the same id replaces its definition).
        task: the task name enqueued at each tick.
        timing: when it ticks (see `Timing.of`: cron= and tz=, or every=).
        args, kwargs: the handler's arguments, the same at every tick.
        queue, priority, max_retries, timeout: the enqueue options (see TaskOptions).
        misfire: "skip", "once" or "all" (see `Misfire`).
        jitter: each tick's task waits a delay in [0, jitter] seconds, fixed per tick.
    """

    id: str
    task: str
    timing: Timing
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    max_retries: int | None = None
    timeout: float | None = None
    misfire: Misfire = "skip"
    jitter: float = 0.0

    def __post_init__(self) -> None:
        """Everything is checked here, so a bad definition is refused before it is stored."""
        validate_schedule_id(self.id)
        validate_task_name(self.task)
        if not isinstance(self.timing, Timing):
            raise ConfigurationError("timing must be a Timing (see Timing.of)")
        if not isinstance(self.args, tuple) or not isinstance(self.kwargs, dict):
            raise ConfigurationError("args must be a tuple or list, kwargs a dict")
        if self.misfire not in MISFIRES:
            raise ConfigurationError(f"misfire must be one of {', '.join(MISFIRES)}")
        jitter = self.jitter
        if isinstance(jitter, bool) or not isinstance(jitter, int | float):
            raise ConfigurationError(f"jitter must be a number of seconds, got {jitter!r}")
        if not 0 <= jitter <= MAX_JITTER:
            raise ConfigurationError(f"jitter must be in 0..{MAX_JITTER:g} seconds")
        self.options()  # checks queue, priority, max_retries and timeout
        serializers.dumps([list(self.args), self.kwargs])

    @classmethod
    def build(
        cls,
        id: str,
        task: str,
        *,
        cron: str | None = None,
        every: timedelta | float | None = None,
        tz: str | None = None,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        **rest: Any,
    ) -> Schedule:
        """From the public arguments (`cron=`/`tz=` or `every=`, args as a list too)."""
        timing = Timing.of(cron, every, tz)
        if isinstance(args, list):
            args = tuple(args)
        kwargs = {} if kwargs is None else kwargs
        return cls(id, task, timing, args, dict(kwargs) if isinstance(kwargs, dict) else kwargs,
                   **rest)  # fmt: skip

    def options(self, delay: float | None = None, key: str | None = None) -> TaskOptions:
        """The enqueue options of one tick's task."""
        return TaskOptions(
            queue=self.queue,
            priority=self.priority,
            max_retries=self.max_retries,
            timeout=self.timeout,
            delay=delay,
            idempotency_key=key,
        )

    def tick_key(self, tick: int) -> str:
        """The idempotency key that makes one tick one task, whoever fires it how often."""
        return f"schedule:{self.id}:{tick}"

    def tick_delay(self, tick: int) -> float | None:
        """The tick's delay in [0, jitter] seconds, fixed per tick: a re-fire asks the same."""
        if not self.jitter:
            return None
        digest = hashlib.sha256(self.tick_key(tick).encode()).digest()
        return round(int.from_bytes(digest[:8], "big") / 2**64 * self.jitter, 3)

    def spec(self) -> bytes:
        """The definition as canonical JSON: equal definitions give equal bytes, so an
        upsert of an unchanged schedule (every worker start) changes nothing."""
        return orjson.dumps(self.to_json(), option=orjson.OPT_SORT_KEYS)

    def timing_key(self) -> str:
        """What decides the ticks; when it changes, ticks count again from the change."""
        return self.timing.describe()

    def to_json(self) -> dict[str, Any]:
        """The definition, JSON-ready."""
        t = self.timing
        return {
            "id": self.id,
            "task": self.task,
            "cron": t.cron,
            "tz": t.tz if t.cron is not None else None,
            "every": None if t.every_ms is None else t.every_ms / 1000,
            "args": list(self.args),
            "kwargs": self.kwargs,
            "queue": self.queue,
            "priority": self.priority,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "misfire": self.misfire,
            "jitter": self.jitter,
        }

    @classmethod
    def from_spec(cls, spec: bytes) -> Schedule:
        """Decode `spec()`; SerializationError (or ConfigurationError) if it is not one."""
        data = serializers.loads(spec)
        if not isinstance(data, dict):
            raise SerializationError("a schedule spec must be a JSON object")
        data = dict(data)
        try:
            return cls.build(
                data.pop("id"),
                data.pop("task"),
                cron=data.pop("cron"),
                every=data.pop("every"),
                tz=data.pop("tz"),
                **data,
            )
        except (KeyError, TypeError) as exc:
            raise SerializationError(f"not a schedule spec: {exc}") from None


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule and its state in Redis: what `list` reports."""

    schedule: Schedule
    origin: str
    paused: bool
    #: when the next tick is due (None while paused)
    next_run: datetime | None
    #: the last tick a worker enqueued, and that task's id (None before the first)
    last_run: datetime | None
    last_task: str | None
    #: ticks enqueued so far
    runs: int
    created_at: datetime | None
    updated_at: datetime | None
    #: when a worker last declared it (`@app.periodic`): an old time says its code is gone
    declared_at: datetime | None = None

    @property
    def id(self) -> str:
        """The schedule's id."""
        return self.schedule.id

    def to_json(self) -> dict[str, Any]:
        """Definition and state, JSON-ready (times as ISO 8601 UTC)."""
        out = self.schedule.to_json()
        out.update(
            origin=self.origin,
            paused=self.paused,
            next_run=_iso(self.next_run),
            last_run=_iso(self.last_run),
            last_task=self.last_task,
            runs=self.runs,
            created_at=_iso(self.created_at),
            updated_at=_iso(self.updated_at),
            declared_at=_iso(self.declared_at),
        )
        return out


def from_millis(ms: float | None) -> datetime | None:
    """A time stored in milliseconds, as an aware UTC datetime (None if unset)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else utc_iso(moment)
