"""`/v1/tasks`: enqueue one or a batch, read a task, cancel it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from conveyor.api.deps import Api, Operator, require_read, require_write
from conveyor.api.errors import ApiError
from conveyor.api.routes.common import JsonRoute, TraceParent, enqueued, to_message
from conveyor.api.schemas import (
    BatchIn,
    BatchOut,
    Cancelled,
    Enqueued,
    ErrorOut,
    NewTaskIn,
    TaskOut,
)
from conveyor.errors import TaskNotFoundError
from conveyor.model import TaskState

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], route_class=JsonRoute)
#: Longest `GET /v1/tasks/{id}?wait=` holds a request (s).
MAX_WAIT = 60.0
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorOut, "description": "Unknown or expired task"}
}


@router.post("", status_code=202, response_model=Enqueued, dependencies=[Depends(require_write)])
async def create_task(
    body: NewTaskIn, response: Response, api: Api, traceparent: TraceParent = None
) -> Enqueued:
    """Enqueue a task. With an idempotency key already used within its window, nothing is
    enqueued and the first task's id comes back with `replayed: true`."""
    message = to_message(body, api, trace=traceparent)
    [handle] = await api.conveyor.enqueue_many_async([message])
    response.headers["Location"] = f"/v1/tasks/{handle.id}"
    if handle.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return enqueued(handle)


@router.post(
    "/batch", status_code=202, response_model=BatchOut, dependencies=[Depends(require_write)]
)
async def create_batch(body: BatchIn, api: Api, traceparent: TraceParent = None) -> BatchOut:
    """Enqueue many tasks in one Redis round trip; answers in the same order (a
    `traceparent` header goes with every one)."""
    limit = api.settings.max_batch
    if len(body.tasks) > limit:
        detail = [{"field": "tasks", "message": f"at most {limit} tasks per batch"}]
        raise ApiError(422, "batch_too_large", f"a batch holds at most {limit} tasks", detail)
    messages = [
        to_message(t, api, f"tasks.{i}.name", traceparent) for i, t in enumerate(body.tasks)
    ]
    handles = await api.conveyor.enqueue_many_async(messages)
    return BatchOut(tasks=[enqueued(h) for h in handles])


@router.get(
    "/{task_id}", response_model=TaskOut, responses=NOT_FOUND, dependencies=[Depends(require_read)]
)
async def get_task(
    task_id: str,
    api: Api,
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_WAIT, description="Seconds to wait for the task to finish first"),
    ] = 0,
) -> TaskOut:
    """A task's record: state, attempts, times, worker, last error, result. With `wait`,
    the answer comes when the task finishes, or after `wait` seconds as it is then: a
    long poll that waits on the queue's events, not by reading the record in a loop."""
    if wait:
        record = await api.inspector.wait_finished(task_id, wait)
    else:
        record = await api.inspector.task(task_id)
    if record is None:
        raise TaskNotFoundError(f"no task {task_id} (never enqueued, or expired)")
    return TaskOut.of(record)


@router.delete(
    "/{task_id}",
    response_model=Cancelled,
    responses={
        **NOT_FOUND,
        202: {"model": Cancelled, "description": "Running: its worker stops it (cancelling)"},
        409: {"model": ErrorOut, "description": "Finished"},
    },
)
async def cancel_task(task_id: str, response: Response, api: Api, actor: Operator) -> Cancelled:
    """Cancel a task: one not yet started is cancelled (200); a running one is cancelling
    (202) until its worker stopped it, then cancelled. 409 once it is finished."""
    state = await api.inspector.cancel(task_id, actor=actor)
    if state is TaskState.CANCELLING:
        response.status_code = 202
        return Cancelled(id=task_id, state="cancelling")
    return Cancelled(id=task_id)
