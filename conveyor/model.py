"""The task record: its states and how it is stored in a Redis hash."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from conveyor import serializers
from conveyor.errors import CorruptRecordError, SerializationError
from conveyor.ids import id_millis, queue_of


class TaskState(StrEnum):
    """Where a task is in its life; see docs/design.md (State machine) for the transitions."""

    SCHEDULED = "scheduled"
    PENDING = "pending"
    ACTIVE = "active"
    #: cancelled while running: its worker is stopping the handler, then it is cancelled
    CANCELLING = "cancelling"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True once the task will never run again (unless a dead letter is replayed)."""
        return self in _TERMINAL


#: Failed, crashed or interrupted attempts a record keeps (fields `attempt:<n>`), for the
#: dashboard's timeline of a task.
ATTEMPT_HISTORY = 10

_TERMINAL = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.DEAD, TaskState.CANCELLED})

#: Fields of the task hash, shared with the Lua scripts (which spell them out too).
RECORD_FIELDS = (
    "name",
    "args",
    "kwargs",
    "state",
    "priority",
    "attempts",
    "failures",
    "crashes",
    "token",
    "enqueued_at",
    "due_at",
    "started_at",
    "finished_at",
    "worker",
    "error",
    "result",
    "max_retries",
    "timeout",
    "idempotency_key",
    "reason",
    "progress",
    "checkpoint",
    "workflow",
    "trace",
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt that ended without success, as the record's history keeps it."""

    number: int
    outcome: str  # retried, dead, failed, crashed, interrupted
    started_at: datetime | None
    finished_at: datetime | None
    worker: str | None = None
    error: dict[str, str] | None = None

    @classmethod
    def from_json(cls, raw: bytes) -> Attempt:
        """Decode one `attempt:<n>` field (written by the scripts' archive_attempt)."""
        entry = serializers.loads(raw)
        return cls(
            number=int(entry["attempt"]),
            outcome=str(entry.get("outcome", "")),
            started_at=_time(entry.get("started_at")),
            finished_at=_time(entry.get("finished_at")),
            worker=entry.get("worker"),
            error=entry.get("error"),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601 strings)."""
        return {name: _iso(getattr(self, name)) for name in self.__slots__}


#: Start of the history fields of a task hash: `attempt:<n>`.
ATTEMPT_FIELD = "attempt:"


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A snapshot of one task as stored in Redis; times are UTC datetimes."""

    id: str
    queue: str
    name: str
    state: TaskState
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int = 0
    attempts: int = 0
    failures: int = 0
    crashes: int = 0
    token: int = 0
    enqueued_at: datetime | None = None
    due_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    error: dict[str, str] | None = None
    result: Any = None
    max_retries: int | None = None
    timeout: float | None = None
    idempotency_key: str | None = None
    #: Why the task is dead or failed: "error", "worker lost", "unknown task", ...
    reason: str | None = None
    #: What its handler last reported with `ctx.progress`: {"fraction": 0..1, "message": ...,
    #: "at": ms since the epoch, Redis' clock}.
    progress: dict[str, Any] | None = None
    #: What its handler last saved with `ctx.checkpoint`; the next attempt starts from it.
    checkpoint: Any = None
    #: The workflow step it runs, `<workflow id>:<node>`.
    workflow: str | None = None
    #: The W3C `traceparent` its producer sent, the parent of its execution's span.
    trace: str | None = None
    #: Its last attempts that ended without success, oldest first.
    history: tuple[Attempt, ...] = ()

    @classmethod
    def from_hash(cls, task_id: str, raw: dict[bytes, bytes]) -> TaskRecord:
        """Decode a task hash; raises CorruptRecordError when a field cannot be read."""
        try:
            fields = {k.decode(): v for k, v in raw.items()}
            record = cls._decode(task_id, fields.get)
            history = [
                Attempt.from_json(v) for k, v in fields.items() if k.startswith(ATTEMPT_FIELD)
            ]
            if history:
                history.sort(key=lambda attempt: attempt.number)
                record = dataclasses.replace(record, history=tuple(history))
            return record
        except (SerializationError, ValueError, KeyError, TypeError, OverflowError, OSError) as exc:
            raise CorruptRecordError(f"task {task_id} has a corrupt record: {exc}") from None

    @classmethod
    def _decode(cls, task_id: str, get: Callable[[str], bytes | None]) -> TaskRecord:

        def text(name: str) -> str | None:
            value = get(name)
            return None if value is None else value.decode("utf-8", "replace")

        def number(name: str) -> int:
            value = get(name)
            return int(value) if value else 0

        return cls(
            id=task_id,
            queue=queue_of(task_id),
            name=text("name") or "",
            state=TaskState(text("state") or ""),
            args=_json(get("args"), []),
            kwargs=_json(get("kwargs"), {}),
            priority=number("priority"),
            attempts=number("attempts"),
            failures=number("failures"),
            crashes=number("crashes"),
            token=number("token"),
            # a record written before ids kept the enqueue time has it as a field
            enqueued_at=_time(get("enqueued_at") or id_millis(task_id)),
            due_at=_time(get("due_at")),
            started_at=_time(get("started_at")),
            finished_at=_time(get("finished_at")),
            worker=text("worker"),
            error=_json(get("error"), None),
            result=_json(get("result"), None),
            max_retries=_optional(get("max_retries"), int),
            timeout=_optional(get("timeout"), float),
            idempotency_key=text("idempotency_key"),
            reason=text("reason"),
            progress=_json(get("progress"), None),
            checkpoint=_json(get("checkpoint"), None),
            workflow=text("workflow"),
            trace=text("trace"),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601 strings)."""
        out = {name: _iso(getattr(self, name)) for name in self.__slots__}
        out["history"] = [attempt.to_json() for attempt in self.history]
        return out


def _json(value: bytes | None, default: Any) -> Any:
    return default if value is None else serializers.loads(value)


def _optional(value: bytes | None, kind: type[int] | type[float]) -> Any:
    return None if not value else kind(value)


def utc_iso(moment: datetime | float) -> str:
    """The one way Conveyor writes a time: ISO 8601 UTC to the millisecond, ending in Z
    (`2026-12-06T23:42:58.123Z`), from an aware datetime or epoch seconds. Scripts store
    milliseconds, so nothing finer is ever true."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, tz=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso(value: Any) -> Any:
    return utc_iso(value) if isinstance(value, datetime) else value


def _time(value: bytes | int | float | None) -> datetime | None:
    """Scripts store times as Redis-clock milliseconds since the epoch."""
    return None if not value else datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def to_millis(seconds: float) -> int:
    """Seconds to the integer milliseconds every script takes."""
    return max(0, round(seconds * 1000))
