"""Request and response models of the HTTP API (pydantic lives only at this edge)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, field_validator, model_validator

from conveyor.flow import MAX_FLOW_KEY, UniqueMode
from conveyor.model import TaskRecord, TaskState, utc_iso
from conveyor.names import QUEUE_NAME, TASK_NAME
from conveyor.options import PRIORITY_RANGE

TaskName = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=f"^{TASK_NAME.pattern}$", examples=["send-email"]),
]
#: A unique, concurrency, rate-limit or group key.
FlowKey = Annotated[str, Field(min_length=1, max_length=MAX_FLOW_KEY)]
QueueName = Annotated[
    str, Field(min_length=1, max_length=64, pattern=f"^{QUEUE_NAME.pattern}$", examples=["emails"])
]
#: A time in an answer: ISO 8601 UTC to the millisecond, ending in Z, as everywhere else.
UtcTime = Annotated[datetime, PlainSerializer(utc_iso, return_type=str, when_used="json")]
#: Ten years: a longer delay is a mistake, not a schedule.
MAX_DELAY = 10 * 365 * 24 * 3600.0


class Strict(BaseModel):
    """Unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


# -- the simple API (compatible with the Go services) ------------------------------------


class SeedTask(BaseModel):
    """The simple API's body: a task type and any JSON payload (passed as the one argument)."""

    type: TaskName
    payload: Any = None


class SeedQueued(BaseModel):
    status: Literal["queued"] = "queued"
    task_id: str


class QueueOut(BaseModel):
    name: str
    pending: int
    active: int
    scheduled: int = Field(description="Delayed tasks and retries not yet due")
    dead: int
    paused: bool
    lag_seconds: float = Field(description="How long the next pending task has waited.")
    retrying: int = Field(0, description="Of `scheduled`: failed tasks waiting to retry")


class ConcurrencyKeyOut(BaseModel):
    key: str
    in_use: int = Field(description="Slots held by running tasks")
    waiting: int = Field(description="Pending tasks waiting for a slot")


class RateBucketOut(BaseModel):
    key: str
    booked_seconds: float = Field(description="How far ahead starts are reserved; 0: free now")


class FlowOut(BaseModel):
    """Flow control in one queue right now."""

    queue: str
    concurrency: list[ConcurrencyKeyOut]
    rates: list[RateBucketOut]
    groups: int = Field(description="Fair groups with tasks ahead of the queue's virtual time")


class SeedStats(BaseModel):
    """The simple API's counters summed over queues, plus per-queue detail."""

    pending: int
    processing: int
    dead_letter: int
    scheduled: int
    queues: dict[str, QueueOut]


# -- tasks -------------------------------------------------------------------------------


class NewTaskIn(Strict):
    """A task to enqueue. `payload` is passed as the handler's one positional argument;
    `args`/`kwargs` give full control. Use `delay` (seconds) or `eta`, not both."""

    name: TaskName
    payload: Any = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    queue: QueueName | None = None
    delay: Annotated[float, Field(ge=0, le=MAX_DELAY)] | None = None
    eta: datetime | None = None
    priority: Annotated[int, Field(ge=PRIORITY_RANGE.start, le=PRIORITY_RANGE.stop - 1)] = 0
    max_retries: Annotated[int, Field(ge=0, le=1000)] | None = None
    timeout: Annotated[float, Field(gt=0, le=MAX_DELAY)] | None = None
    idempotency_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    unique: bool | UniqueMode | None = Field(
        None, description="at most one live task per unique key: true (skip), replace, throttle"
    )
    unique_key: FlowKey | None = Field(None, description="default: the arguments")
    unique_window: Annotated[float, Field(gt=0, le=MAX_DELAY)] | None = Field(
        None, description="seconds a throttle holds its key"
    )
    rate_limit: Annotated[str, Field(max_length=32)] | None = Field(
        None, description="at most so many starts per period: 100/s, 10/m, 5/h, 10/5s"
    )
    rate_limit_key: FlowKey | None = Field(None, description="default: the task's name")
    rate_limit_burst: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    concurrency: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        None, description="at most so many tasks of the concurrency key run at once"
    )
    concurrency_key: FlowKey | None = Field(None, description="default: the task's name")
    group_key: FlowKey | None = Field(None, description="fair group: claims go round them")
    durable: bool | None = Field(
        None, description="answer only once a replica has the task too (Redis WAIT)"
    )

    @model_validator(mode="after")
    def _exclusive(self) -> NewTaskIn:
        if "payload" in self.model_fields_set and self.args is not None:
            raise ValueError("give payload or args, not both")
        if self.delay is not None and self.eta is not None:
            raise ValueError("give delay or eta, not both")
        return self

    @field_validator("eta")
    @classmethod
    def _eta_in_reach(cls, eta: datetime | None) -> datetime | None:
        if eta is not None:
            if eta.tzinfo is None:
                raise ValueError("eta needs a time zone, e.g. 2030-01-01T00:00:00Z")
            if eta > datetime.now(UTC) + timedelta(seconds=MAX_DELAY):
                raise ValueError("eta is more than ten years away")
        return eta


class Enqueued(BaseModel):
    id: str
    status: Literal["queued", "scheduled"]
    replayed: bool = Field(description="True when the idempotency key matched an earlier task.")


class BatchIn(Strict):
    tasks: Annotated[list[NewTaskIn], Field(min_length=1)]


class BatchOut(BaseModel):
    tasks: list[Enqueued]


class AttemptOut(BaseModel):
    """An attempt that ended without success, from the record's history."""

    number: int
    outcome: str = Field(description="retried, dead, failed, crashed, interrupted or cancelled")
    started_at: UtcTime | None
    finished_at: UtcTime | None
    worker: str | None
    error: dict[str, Any] | None


class TaskOut(BaseModel):
    """A task record; times are ISO 8601 in UTC."""

    id: str
    queue: str
    name: str
    state: TaskState
    args: list[Any]
    kwargs: dict[str, Any]
    priority: int
    attempts: int
    failures: int
    crashes: int
    token: int
    enqueued_at: UtcTime | None
    due_at: UtcTime | None
    started_at: UtcTime | None
    finished_at: UtcTime | None
    worker: str | None
    error: dict[str, Any] | None
    result: Any
    max_retries: int | None
    timeout: float | None
    idempotency_key: str | None
    reason: str | None
    progress: dict[str, Any] | None = Field(
        default=None, description="Its handler's last report: fraction (0..1), message, at (ms)"
    )
    checkpoint: Any = Field(
        default=None, description="What its handler last checkpointed (the next attempt's start)"
    )
    history: list[AttemptOut] = Field(
        default_factory=list, description="The last attempts that ended without success"
    )

    @classmethod
    def of(cls, record: TaskRecord) -> TaskOut:
        return cls.model_validate(record, from_attributes=True)


class Cancelled(BaseModel):
    """`cancelled` at once for a task not yet started; `cancelling` (202) for a running one:
    its worker stops it, then its record reads `cancelled`."""

    id: str
    state: Literal["cancelled", "cancelling"] = "cancelled"


# -- queues, dead letters, workers -------------------------------------------------------


class QueuesOut(BaseModel):
    queues: list[QueueOut]


class DeadPage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[TaskOut]


class ReplayIn(Strict):
    """Which dead letters to requeue: every queue and task name unless narrowed."""

    queue: QueueName | None = None
    task: TaskName | None = None


class Requeued(BaseModel):
    requeued: int


class Deleted(BaseModel):
    deleted: int


class WorkerOut(BaseModel):
    """A worker as its registry entry describes it; its times (`*_at`) as ISO 8601 UTC."""

    model_config = ConfigDict(extra="allow")

    id: str
    host: str | None = None
    pid: int | None = None
    queues: list[str] = []
    concurrency: int | None = None
    started_at: str | None = None
    heartbeat_at: str | None = None

    @classmethod
    def of(cls, info: dict[str, Any]) -> WorkerOut:
        """From a registry entry, whose times are epoch seconds."""
        times = {k: utc_iso(v) for k, v in info.items() if k.endswith("_at") and _number(v)}
        return cls(**{**info, **times})


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class WorkersOut(BaseModel):
    workers: list[WorkerOut]


class AuditEntryOut(BaseModel):
    """One operator action."""

    at: UtcTime
    actor: str = Field(description="The token's name, anonymous, or cli:user@host")
    via: str = Field(description="dashboard, api or cli")
    address: str | None
    action: str = Field(examples=["pause", "cancel", "dead.retry"])
    target: str = Field(description="The queue, task ids or filter acted on")
    count: int = Field(description="How many tasks (or queues) it changed")


class AuditOut(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[AuditEntryOut]


class Health(BaseModel):
    status: str


# -- errors ------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    """Every error answer has this shape."""

    error: ErrorDetail


# -- workflows ---------------------------------------------------------------------------

WorkflowId = Annotated[
    str, Field(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$", examples=["01JH5Q6V4T2W9X0Y1Z2A3B4C5D"])
]


class WorkflowStepIn(Strict):
    """One step of a workflow: exactly one of `task`, `chain`, `group` or `chord`."""

    task: NewTaskIn | None = None
    chain: Annotated[list[WorkflowStepIn], Field(min_length=1)] | None = None
    group: Annotated[list[WorkflowStepIn], Field(min_length=1)] | None = None
    chord: ChordIn | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> WorkflowStepIn:
        given = [k for k in ("task", "chain", "group", "chord") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a step is one of task, chain, group, chord; got {given or 'none'}")
        return self


class ChordIn(Strict):
    """A group, then a callback that gets the list of its results."""

    group: Annotated[list[WorkflowStepIn], Field(min_length=1)]
    callback: WorkflowStepIn


class NewWorkflowIn(Strict):
    """A workflow to enqueue: a chain, group or chord of steps, nested as deep as needed.
    Each step's result reaches the next step as an extra first positional argument."""

    workflow: WorkflowStepIn
    on_failure: Literal["stop", "continue"] = Field(
        "stop",
        description="stop: a task failing for good fails the workflow; continue: "
        "what follows gets an error description in place of its result",
    )


class WorkflowEnqueued(BaseModel):
    """The id of the workflow enqueued: its state at GET /v1/workflows/{id}."""

    id: str


class WorkflowSummaryOut(BaseModel):
    """A workflow of the index: its id, when it was enqueued, its state now."""

    id: str
    created_at: UtcTime
    state: Literal["running", "succeeded", "failed", "expired"]


class WorkflowPage(BaseModel):
    """A page of the workflow index, newest first."""

    total: int
    offset: int
    limit: int
    items: list[WorkflowSummaryOut]


class WorkflowNodeOut(BaseModel):
    """One node of a workflow: a task, or a chain, group or chord around tasks."""

    id: str
    kind: Literal["task", "chain", "group", "chord"]
    parent: str | None
    children: list[str]
    state: Literal["waiting", "started", "succeeded", "failed"]
    result: Any = Field(description="Its result, or its error description; null until it ended")
    task_id: str | None = Field(description="The task that runs it (task nodes, once started)")
    name: str | None = Field(description="The task's name (task nodes)")


class WorkflowOut(BaseModel):
    """A workflow and each of its nodes, the root first; times are ISO 8601 in UTC."""

    id: str
    state: Literal["running", "succeeded", "failed"]
    policy: Literal["stop", "continue"]
    created_at: UtcTime | None
    finished_at: UtcTime | None
    result: Any = Field(description="The root's result once it succeeded")
    error: dict[str, Any] | None = Field(description="What failed it (policy stop)")
    failures: int = Field(description="Task nodes that failed for good")
    nodes: list[WorkflowNodeOut]


# -- schedules ---------------------------------------------------------------------------

ScheduleId = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$", examples=["nightly"])
]


class ScheduleIn(Strict):
    """A periodic schedule: `task` enqueued at each tick of `cron` (in `tz`) or `every`
    seconds, with fixed arguments and options. Give exactly one of cron and every."""

    task: TaskName
    cron: Annotated[str, Field(min_length=1, max_length=200, examples=["*/5 * * * *"])] | None = (
        None
    )
    every: Annotated[float, Field(ge=1, le=366 * 86400, description="Seconds")] | None = None
    tz: Annotated[str, Field(min_length=1, max_length=64, examples=["Europe/Paris"])] | None = None
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    queue: QueueName | None = None
    priority: Annotated[int, Field(ge=PRIORITY_RANGE.start, le=PRIORITY_RANGE.stop - 1)] | None = (
        None
    )
    max_retries: Annotated[int, Field(ge=0, le=1000)] | None = None
    timeout: Annotated[float, Field(gt=0, le=MAX_DELAY)] | None = None
    misfire: Literal["skip", "once", "all"] = "skip"
    jitter: Annotated[float, Field(ge=0, le=86400)] = 0.0

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleIn:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of cron and every")
        if self.every is not None and self.tz is not None:
            raise ValueError("tz applies to cron schedules only")
        return self


class ScheduleOut(BaseModel):
    """A schedule's definition and state; times are ISO 8601 UTC."""

    id: str
    task: str
    cron: str | None
    tz: str | None
    every: float | None = Field(description="Seconds between ticks (None for cron)")
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    priority: int
    max_retries: int | None
    timeout: float | None
    misfire: str
    jitter: float
    origin: str = Field(description='"code" (declared with @app.periodic) or "api"')
    paused: bool
    next_run: str | None = Field(description="When the next tick is due (None while paused)")
    last_run: str | None = Field(description="The last tick a worker enqueued")
    last_task: str | None = Field(description="The id of that tick's task")
    runs: int = Field(description="Ticks enqueued so far")
    created_at: str | None
    updated_at: str | None
    declared_at: str | None = Field(
        None, description="When a worker last declared it in code (None: never)"
    )


class SchedulesOut(BaseModel):
    schedules: list[ScheduleOut]


class ScheduleUpserted(ScheduleOut):
    result: str = Field(description='"created", "updated" or "unchanged"')
