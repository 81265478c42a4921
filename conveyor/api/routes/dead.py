"""`/v1/dead`: list, inspect, replay and delete dead letters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from conveyor.api.deps import Api, Operator, require_read
from conveyor.api.routes.common import JsonRoute
from conveyor.api.schemas import (
    DeadPage,
    Deleted,
    ErrorOut,
    QueueName,
    ReplayIn,
    Requeued,
    TaskName,
    TaskOut,
)
from conveyor.errors import TaskNotFoundError

router = APIRouter(prefix="/v1/dead", tags=["dead letters"], route_class=JsonRoute)
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorOut, "description": "Not in a dead-letter queue"}
}


@router.get("", response_model=DeadPage, dependencies=[Depends(require_read)])
async def list_dead(
    api: Api,
    queue: Annotated[QueueName | None, Query(description="One queue (default: all)")] = None,
    task: Annotated[TaskName | None, Query(description="Only this task name")] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeadPage:
    """Dead letters, newest first, with their error and reason."""
    total, records = await api.inspector.dead_letters(
        [queue] if queue else None, offset=offset, limit=limit, task_name=task
    )
    return DeadPage(total=total, offset=offset, limit=limit, items=[TaskOut.of(r) for r in records])


@router.get(
    "/{task_id}", response_model=TaskOut, responses=NOT_FOUND, dependencies=[Depends(require_read)]
)
async def get_dead(task_id: str, api: Api) -> TaskOut:
    """One dead letter, traceback included."""
    record = await api.inspector.dead_letter(task_id)
    if record is None:
        raise TaskNotFoundError(f"no dead letter {task_id}")
    return TaskOut.of(record)


@router.post(
    "/{task_id}/retry",
    response_model=Requeued,
    responses=NOT_FOUND,
)
async def retry_dead(task_id: str, api: Api, actor: Operator) -> Requeued:
    """Requeue one dead letter as a fresh pending task."""
    if await api.inspector.dead_letter(task_id) is None:
        raise TaskNotFoundError(f"no dead letter {task_id}")
    return Requeued(requeued=len(await api.inspector.replay([task_id], actor=actor)))


@router.post("/retry", response_model=Requeued)
async def retry_all_dead(body: ReplayIn, api: Api, actor: Operator) -> Requeued:
    """Requeue every dead letter, or those of one queue and/or task name."""
    queues = [body.queue] if body.queue else None
    return Requeued(requeued=await api.inspector.replay_all(queues, body.task, actor=actor))


@router.delete("/{task_id}", response_model=Deleted, responses=NOT_FOUND)
async def delete_dead(task_id: str, api: Api, actor: Operator) -> Deleted:
    """Delete one dead letter and its record."""
    if await api.inspector.dead_letter(task_id) is None:
        raise TaskNotFoundError(f"no dead letter {task_id}")
    return Deleted(deleted=await api.inspector.delete_dead([task_id], actor=actor))


@router.delete("", response_model=Deleted)
async def purge_dead(
    api: Api,
    actor: Operator,
    queue: Annotated[QueueName | None, Query(description="One queue (default: all)")] = None,
) -> Deleted:
    """Delete every dead letter (of one queue, or all)."""
    return Deleted(deleted=await api.inspector.purge_dead([queue] if queue else None, actor=actor))
