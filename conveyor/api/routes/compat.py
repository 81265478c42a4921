"""The seeds' API, unchanged: `POST /task` and `GET /stats`."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from conveyor.api.deps import Api, require_read, require_write
from conveyor.api.routes.common import check_allowed
from conveyor.api.schemas import QueueOut, SeedQueued, SeedStats, SeedTask
from conveyor.task import Message

router = APIRouter(tags=["seed-compatible"])


@router.post(
    "/task", status_code=202, response_model=SeedQueued, dependencies=[Depends(require_write)]
)
async def post_task(body: SeedTask, api: Api) -> SeedQueued:
    """Enqueue `type` on the default queue; `payload` arrives as the handler's one argument."""
    check_allowed(body.type, api.settings, "type")
    [handle] = await api.conveyor.enqueue_many_async([Message(body.type, (body.payload,))])
    return SeedQueued(task_id=handle.id)


@router.get("/stats", response_model=SeedStats, dependencies=[Depends(require_read)])
async def get_stats(api: Api) -> SeedStats:
    """Pending, processing (active) and dead-letter counts summed over queues."""
    stats = await api.inspector.queue_stats()
    return SeedStats(
        pending=sum(s.pending for s in stats),
        processing=sum(s.active for s in stats),
        dead_letter=sum(s.dead for s in stats),
        scheduled=sum(s.scheduled for s in stats),
        queues={s.name: QueueOut(**s.to_json()) for s in stats},
    )
