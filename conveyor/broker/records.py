"""The values operations exchange with their callers: tasks going in, claims and stats
coming out (plain slotted dataclasses, no I/O)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor import serializers
from conveyor.broker.scripts import Arg
from conveyor.flow import Flow, resolve_flow
from conveyor.ids import new_task_id
from conveyor.model import to_millis
from conveyor.names import validate_task_name
from conveyor.options import DEFAULT_QUEUE, NO_OPTIONS, TaskOptions
from conveyor.shards import place

#: Options kept on the task record (as hash fields of the same name) when set; the others
#: act at enqueue only. Priority 0, the default, is not written.
STORED_OPTIONS = ("priority", "max_retries", "timeout", "idempotency_key")


@dataclass(frozen=True, slots=True)
class NewTask:
    """A task about to be enqueued, already encoded."""

    id: str
    queue: str
    name: str
    args: bytes | None
    kwargs: bytes | None
    delay_ms: int = 0
    options: TaskOptions = NO_OPTIONS
    #: its flow control, resolved from `options` (None: it uses none)
    flow: Flow | None = None
    #: the workflow step it runs, `<workflow id>:<node>` (None: it is a task of its own)
    workflow: str | None = None
    #: the W3C `traceparent` of the producer's span, the parent of its execution's
    trace: str | None = None

    @classmethod
    def build(
        cls,
        name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: TaskOptions,
        shards: Mapping[str, int],
        *,
        workflow: str | None = None,
        trace: str | None = None,
    ) -> NewTask:
        """Validate and encode a task (raises before anything is sent), on the shard of
        its queue it goes to when the queue is split (`shards`, see conveyor/shards.py)."""
        validate_task_name(name)
        delay = options.delay or 0.0
        if options.eta is not None:
            delay = max(delay, options.eta.timestamp() - time.time())
        encoded_args = serializers.dumps(list(args)) if args else None
        encoded_kwargs = serializers.dumps(kwargs) if kwargs else None
        flow = resolve_flow(name, options, encoded_args, encoded_kwargs)
        queue = options.queue or DEFAULT_QUEUE
        queue = place(queue, shards.get(queue, 1), options, flow)
        return cls(
            id=new_task_id(queue),
            queue=queue,
            name=name,
            args=encoded_args,
            kwargs=encoded_kwargs,
            delay_ms=to_millis(delay),
            options=options,
            flow=flow,
            workflow=workflow,
            trace=trace,
        )

    @property
    def priority(self) -> int:
        """Its priority (0 unless set)."""
        return self.options.priority or 0

    @property
    def idempotency_key(self) -> str | None:
        """Its idempotency key, if any."""
        return self.options.idempotency_key

    def fields(self) -> list[Arg]:
        """Field/value pairs of the task hash, only those that differ from the defaults."""
        out: list[Arg] = ["name", self.name]
        if self.args is not None:
            out += ["args", self.args]
        if self.kwargs is not None:
            out += ["kwargs", self.kwargs]
        for name in STORED_OPTIONS:
            value = getattr(self.options, name)
            if value is not None and (value or name != "priority"):  # priority 0: the default
                out += [name, value]
        if self.flow is not None:
            out += ["flow", self.flow.field()]
        if self.workflow is not None:
            out += ["workflow", self.workflow]
        if self.trace is not None:
            out += ["trace", self.trace]
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
    #: what the last attempt saved with `ctx.checkpoint` (JSON), None if nothing
    checkpoint: bytes | None = None
    #: the workflow step it runs (see NewTask.workflow)
    workflow: str | None = None
    #: the producer's W3C `traceparent` (see NewTask.trace)
    trace: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """What one claim leased, and whether it skipped suspects (so the worker should drain)."""

    tasks: list[ClaimedTask]
    suspects_waiting: bool = False
    #: the earliest start it reserved for a task over its rate limit (ms), if any: when
    #: that task should be promoted
    deferred_until_ms: int | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Depth of one queue per state, and its lag: how long the longer waiting of its next
    tasks has waited (the first of the pending ZSET, the oldest of the ready list)."""

    name: str
    pending: int
    active: int
    scheduled: int
    dead: int
    paused: bool
    lag_seconds: float = 0.0
    #: Of `scheduled`: failed tasks waiting for their retry.
    retrying: int = 0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {s: getattr(self, s) for s in self.__slots__}
