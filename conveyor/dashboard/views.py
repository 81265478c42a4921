"""What the page shows, as JSON: queue rows, task summaries, a task's timeline and the
actions its state allows, worker rows. Pure functions of what the Inspector returned."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conveyor.broker.records import QueueStats
from conveyor.model import Attempt, TaskRecord, TaskState, utc_iso

#: The actions each state allows an operator (a running task is its worker's: it may only
#: be asked to stop).
ACTIONS: dict[TaskState, tuple[str, ...]] = {
    TaskState.PENDING: ("cancel", "delete"),
    TaskState.SCHEDULED: ("cancel", "retry", "delete"),
    TaskState.RETRYING: ("cancel", "retry", "delete"),
    TaskState.ACTIVE: ("cancel",),
    TaskState.CANCELLING: (),
    TaskState.DEAD: ("retry", "delete"),
    TaskState.SUCCEEDED: ("delete",),
    TaskState.FAILED: ("delete",),
    TaskState.CANCELLED: ("delete",),
}
#: How a history entry's outcome reads on the timeline.
_ENDED = {
    "retried": ("failed", "failed; retried later"),
    "dead": ("failed", "failed for good: kept in the dead letters"),
    "failed": ("failed", "failed for good"),
    "crashed": ("crashed", "its worker was lost"),
    "interrupted": ("interrupted", "given back unfinished at a worker's shutdown"),
    "cancelled": ("cancelled", "stopped: cancelled while running"),
}


def queue_row(stats: QueueStats) -> dict[str, Any]:
    """A queue's depths; `scheduled` counts only delayed tasks, `retrying` the retries."""
    return {
        "name": stats.name,
        "pending": stats.pending,
        "active": stats.active,
        "scheduled": stats.scheduled - stats.retrying,
        "retrying": stats.retrying,
        "dead": stats.dead,
        "paused": stats.paused,
        "lag_seconds": round(stats.lag_seconds, 3),
    }


def summary(record: TaskRecord) -> dict[str, Any]:
    """One row of a task list."""
    return {
        "id": record.id,
        "queue": record.queue,
        "name": record.name,
        "state": record.state,
        "attempts": record.attempts,
        "enqueued_at": _iso(record.enqueued_at),
        "due_at": _iso(record.due_at),
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "worker": record.worker,
        "error": one_line(record.error),
        "reason": record.reason,
    }


def task_view(record: TaskRecord) -> dict[str, Any]:
    """The task page: the record, its timeline, and the actions its state allows."""
    task = record.to_json()
    task.pop("history", None)
    task.pop("token", None)
    return {
        "task": task,
        "timeline": timeline(record),
        "actions": list(ACTIONS.get(record.state, ())),
    }


def timeline(record: TaskRecord) -> list[dict[str, Any]]:
    """The life of a task, oldest first: enqueued, each attempt's start and end (from the
    record's history; the current attempt from its own fields), and where it is now."""
    events = [_event(record.enqueued_at, "enqueued", None, None, f"enqueued on {record.queue}")]
    archived = {attempt.number for attempt in record.history}
    for attempt in record.history:
        events += _attempt_events(attempt)
    if record.attempts and record.attempts not in archived and record.started_at:
        events.append(
            _event(record.started_at, "started", record.attempts, record.worker, "started")
        )
    events += _now(record)
    return events


def _attempt_events(attempt: Attempt) -> list[dict[str, Any]]:
    kind, text = _ENDED.get(attempt.outcome, (attempt.outcome, attempt.outcome))
    started = _event(attempt.started_at, "started", attempt.number, attempt.worker, "started")
    ended = _event(attempt.finished_at, kind, attempt.number, attempt.worker, text)
    ended["error"] = attempt.error
    return [started, ended]


def _now(record: TaskRecord) -> list[dict[str, Any]]:
    """The event that says where the task is now."""
    state, at = record.state, record.finished_at
    if state is TaskState.RETRYING:
        return [_event(record.due_at, "retry_due", None, None, "next attempt due")]
    if state is TaskState.SCHEDULED:
        return [_event(record.due_at, "due", None, None, "due")]
    if state is TaskState.SUCCEEDED:
        return [_event(at, "succeeded", record.attempts, record.worker, "succeeded")]
    if state in (TaskState.DEAD, TaskState.FAILED):
        text = f"{state}: {record.reason or 'error'}"
        ended = _event(at, str(state), record.attempts, record.worker, text)
        last = record.history[-1].number if record.history else None
        if last != record.attempts:  # else the attempt's own event shows the error
            ended["error"] = record.error
        return [ended]
    if state is TaskState.CANCELLED:
        return [_event(at, "cancelled", None, None, "cancelled")]
    if state is TaskState.ACTIVE:
        return [_event(None, "running", record.attempts, record.worker, "running now")]
    if state is TaskState.CANCELLING:
        text = "cancelled: its worker is stopping it"
        return [_event(None, "cancelling", record.attempts, record.worker, text)]
    return [_event(None, "pending", None, None, "waiting for a worker")]


def _event(
    at: datetime | None, kind: str, attempt: int | None, worker: str | None, text: str
) -> dict[str, Any]:
    return {
        "at": _iso(at),
        "kind": kind,
        "attempt": attempt,
        "worker": worker,
        "text": text,
        "error": None,
    }


def worker_row(info: dict[str, Any], now: float, lost_after: float) -> dict[str, Any]:
    """A worker as its registry entry describes it; lost once its heartbeat is older than
    `lost_after` seconds (it is removed when its description expires or the reaper acts)."""
    heartbeat = info.get("heartbeat_at")
    return {
        "id": info.get("id"),
        "host": info.get("host"),
        "pid": info.get("pid"),
        "queues": info.get("queues", []),
        "concurrency": info.get("concurrency"),
        "in_flight": info.get("in_flight"),
        "processed": info.get("processed"),
        "metrics_port": info.get("metrics_port"),
        "started_at": _epoch_iso(info.get("started_at")),
        "heartbeat_at": _epoch_iso(heartbeat),
        "lost": isinstance(heartbeat, int | float) and now - heartbeat > lost_after,
    }


def one_line(error: dict[str, Any] | None) -> str | None:
    """ "Type: message" of an error, on one line."""
    if not error:
        return None
    text = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return " ".join(text.split())[:300]


def _iso(value: datetime | None) -> str | None:
    return utc_iso(value) if value else None


def _epoch_iso(value: Any) -> str | None:
    return utc_iso(value) if isinstance(value, int | float) else None
