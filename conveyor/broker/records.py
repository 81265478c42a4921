"""The values operations exchange with their callers: tasks going in, claims and stats
coming out (plain slotted dataclasses, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.broker.scripts import Arg


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task about to be enqueued, already encoded."""

    id: str
    queue: str
    name: str
    args: bytes | None
    kwargs: bytes | None
    delay_ms: int = 0
    priority: int = 0
    idempotency_key: str | None = None
    max_retries: int | None = None
    timeout: float | None = None

    def fields(self) -> list[Arg]:
        """Field/value pairs of the task hash, only those that differ from the defaults."""
        out: list[Arg] = ["name", self.name]
        optional: tuple[tuple[str, Arg | None], ...] = (
            ("args", self.args),
            ("kwargs", self.kwargs),
            ("priority", self.priority or None),
            ("max_retries", self.max_retries),
            ("timeout", self.timeout),
            ("idempotency_key", self.idempotency_key),
        )
        for name, value in optional:
            if value is not None:
                out += [name, value]
        return out


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """The id a producer gets back; `replayed` when an idempotency key matched; the
    task's state as stored (pending or scheduled; for a replay, the first task's now)."""

    id: str
    replayed: bool
    state: str = ""


@dataclass(slots=True)
class ClaimedTask:
    """A task leased to this worker; payload decoding is left to the executor."""

    id: str
    queue: str
    token: int
    attempts: int
    name: str
    args: bytes | None
    kwargs: bytes | None
    failures: int
    crashes: int
    max_retries: int | None
    timeout: float | None
    enqueued_at_ms: int
    due_at_ms: int | None
    claimed_at_ms: int


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim leased, and whether it skipped suspects (so the worker should drain)."""

    tasks: list[ClaimedTask]
    suspects_waiting: bool = False


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Depth of one queue per state, and its lag: how long the next task has waited."""

    name: str
    pending: int
    active: int
    scheduled: int
    dead: int
    paused: bool
    lag_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {s: getattr(self, s) for s in self.__slots__}
