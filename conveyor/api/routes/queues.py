"""`/v1/queues`: depths and lag, flow control, pause and resume."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from conveyor.api.deps import Api, Operator, require_read
from conveyor.api.errors import ApiError
from conveyor.api.schemas import ErrorOut, FlowOut, QueueName, QueueOut, QueuesOut

router = APIRouter(prefix="/v1/queues", tags=["queues"])
QueueParam = Annotated[QueueName, Path(description="A queue name")]


@router.get("", response_model=QueuesOut, dependencies=[Depends(require_read)])
async def list_queues(api: Api) -> QueuesOut:
    """Every queue with its depth per state and its lag."""
    return QueuesOut(queues=[QueueOut(**s.to_json()) for s in await api.inspector.queue_stats()])


@router.get(
    "/{name}",
    response_model=QueueOut,
    responses={404: {"model": ErrorOut, "description": "Nothing was ever enqueued to it"}},
    dependencies=[Depends(require_read)],
)
async def get_queue(name: QueueParam, api: Api) -> QueueOut:
    """One queue's depth per state and lag."""
    stats = await api.inspector.queue(name)
    if stats is None:
        raise ApiError(404, "not_found", f"no queue {name!r}")
    return QueueOut(**stats.to_json())


@router.get("/{name}/flow", response_model=FlowOut, dependencies=[Depends(require_read)])
async def get_queue_flow(name: QueueParam, api: Api) -> FlowOut:
    """Concurrency slots in use and tasks waiting for them, rate-limit buckets, fair groups."""
    return FlowOut.model_validate((await api.inspector.flow(name)).to_json())


@router.post("/{name}/pause", response_model=QueueOut)
async def pause_queue(name: QueueParam, api: Api, actor: Operator) -> QueueOut:
    """No worker claims from a paused queue until it is resumed; enqueueing goes on."""
    stats = await api.inspector.set_paused(name, True, actor=actor)
    return QueueOut(**stats.to_json())


@router.post("/{name}/resume", response_model=QueueOut)
async def resume_queue(name: QueueParam, api: Api, actor: Operator) -> QueueOut:
    """Let workers claim from the queue again."""
    stats = await api.inspector.set_paused(name, False, actor=actor)
    return QueueOut(**stats.to_json())
