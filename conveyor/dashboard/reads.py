"""The JSON the pages read (any valid token), and the live stream."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from conveyor.api.errors import ApiError
from conveyor.api.schemas import QueueName, TaskName
from conveyor.broker.dead_letters import DeadFilter
from conveyor.dashboard.state import Dash, viewer
from conveyor.dashboard.views import queue_row, summary, task_view, worker_row
from conveyor.errors import TaskNotFoundError
from conveyor.ids import is_task_id

router = APIRouter(prefix="/api", dependencies=[Depends(viewer)])

Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=500)]
Age = Annotated[float | None, Query(ge=0, le=10 * 365 * 24 * 3600)]


@router.get("/overview")
async def overview(dash: Dash) -> dict[str, Any]:
    """Queues with their depths per state and lag; workers alive and lost."""
    return await dash.live.overview()


@router.get("/history")
async def history(
    dash: Dash,
    window: Literal["15m", "1h", "24h"] = "15m",
    queue: QueueName | None = None,
) -> dict[str, Any]:
    """Outcomes per second and latency percentiles, one point per bucket, oldest first."""
    return await dash.live.history(window, queue)


@router.get("/events")
async def events(dash: Dash, request: Request) -> StreamingResponse:
    """A snapshot (overview and 15-minute history) every second, as server-sent events."""
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    stream = dash.live.stream(request.is_disconnected)
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


@router.get("/workers")
async def workers(dash: Dash) -> dict[str, Any]:
    """Every registered worker; `lost` once it stopped heart-beating."""
    now = time.time()
    infos = await dash.inspector.workers()
    rows = [worker_row(info, now, dash.live.lost_after) for info in infos]
    return {"now": int(now * 1000), "workers": sorted(rows, key=lambda w: str(w["id"]))}


@router.get("/queues/{name}")
async def queue(
    dash: Dash,
    name: QueueName,
    state: Literal["pending", "active", "scheduled", "retrying", "dead"] = "pending",
    order: Literal["oldest", "newest"] = "oldest",
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    """A queue's tasks in one state, a page at a time."""
    stats = await dash.inspector.queue(name)
    if stats is None:
        raise ApiError(404, "not_found", f"no queue {name!r}")
    newest = order == "newest"
    total, records = await dash.inspector.tasks(
        name, state, newest_first=newest, offset=offset, limit=limit
    )
    flow = await dash.inspector.flow(name)
    return {
        "queue": queue_row(stats), "state": state, "order": order, "total": total,
        "offset": offset, "limit": limit, "items": [summary(r) for r in records],
        "flow": flow.to_json(),
    }  # fmt: skip


@router.get("/tasks/{task_id}")
async def task(dash: Dash, task_id: str) -> dict[str, Any]:
    """A task: its record, timeline and the actions its state allows."""
    record = await dash.inspector.task(task_id)
    if record is None:
        raise TaskNotFoundError(f"no task {task_id} (never enqueued, or expired)")
    return task_view(record)


@router.get("/tasks/{task_id}/events")
async def task_events(dash: Dash, request: Request, task_id: str) -> StreamingResponse:
    """The task's state changes as server-sent events (`change`), for its page."""
    if not is_task_id(task_id):
        raise TaskNotFoundError(f"no task {task_id!r}: not a task id")
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    stream = dash.live.task_changes(task_id, request.is_disconnected)
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


@router.get("/dead")
async def dead(
    dash: Dash,
    task: TaskName | None = None,
    text: Annotated[str | None, Query(max_length=200)] = None,
    min_age: Age = None,
    max_age: Age = None,
    queue: QueueName | None = None,
    offset: Offset = 0,
    limit: Limit = 50,
) -> dict[str, Any]:
    """Dead letters matching a filter, newest first; `total` counts the matches."""
    where = DeadFilter(task, text or None, min_age, max_age)
    queues = [queue] if queue else None
    total, records = await dash.inspector.dead_letters(
        queues, offset=offset, limit=limit, where=where
    )
    items = [summary(r) for r in records]
    return {"total": total, "offset": offset, "limit": limit, "items": items}


@router.get("/audit")
async def audit(dash: Dash, offset: Offset = 0, limit: Limit = 50) -> dict[str, Any]:
    """Operator actions, newest first."""
    total, entries = await dash.inspector.audit_log(offset, limit)
    items = [e.to_json() for e in entries]
    return {"total": total, "offset": offset, "limit": limit, "items": items}


@router.get("/schedules")
async def schedules(dash: Dash) -> dict[str, Any]:
    """Every periodic schedule with its next and last run, by id."""
    infos = await dash.inspector.schedules.list()
    return {"now": int(time.time() * 1000), "schedules": [i.to_json() for i in infos]}
