"""The simple API, compatible with the Go services Conveyor descends from: `POST /task`
and `GET /stats`, unchanged."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Depends, Request, Response

from conveyor.api.config import Scope
from conveyor.api.deps import Api, ApiState, require_read
from conveyor.api.routes.common import (
    TRACEPARENT_PARAMETER,
    DirectRoute,
    check_name,
    parse_body,
    request_body,
    require_json,
)
from conveyor.api.schemas import QueueOut, SeedQueued, SeedStats, SeedTask
from conveyor.api.security import authorize
from conveyor.broker.records import QueueStats
from conveyor.producer import Message
from conveyor.traceparent import valid_traceparent

router = APIRouter(tags=["simple API (Go-compatible)"])


async def post_task(request: Request) -> Response:
    """Enqueue `type` on the default queue; `payload` arrives as the handler's one argument."""
    api: ApiState = request.app.state.conveyor
    authorize(request, api.settings.tokens, Scope.WRITE)  # inline: no dependency to solve
    require_json(request)
    body = parse_body(SeedTask, await request.body())
    check_name(body.type, api, "type")
    trace = valid_traceparent(request.headers.get("traceparent"))  # invalid: ignored
    message = Message(body.type, (body.payload,), trace=trace)
    [handle] = await api.conveyor.enqueue_many_async([message])
    answer = orjson.dumps({"status": "queued", "task_id": handle.id})
    return Response(answer, status_code=202, media_type="application/json")


# The hottest route: it checks the token, parses its body and writes its answer itself,
# with no dependencies for FastAPI to solve; the OpenAPI schema still documents both.
router.add_api_route(
    "/task",
    post_task,
    methods=["POST"],
    status_code=202,
    response_model=SeedQueued,
    openapi_extra={**request_body(SeedTask), "parameters": [TRACEPARENT_PARAMETER]},
    route_class_override=DirectRoute,
)


@router.get("/stats", response_model=SeedStats, dependencies=[Depends(require_read)])
async def get_stats(api: Api) -> SeedStats:
    """Pending, processing (active) and dead-letter counts summed over queues."""
    return seed_stats(await api.inspector.queue_stats())


def seed_stats(stats: list[QueueStats]) -> SeedStats:
    """The simple API's counters of `stats` (the dashboard serves the same at its /stats)."""
    return SeedStats(
        pending=sum(s.pending for s in stats),
        processing=sum(s.active for s in stats),
        dead_letter=sum(s.dead for s in stats),
        scheduled=sum(s.scheduled for s in stats),
        queues={s.name: QueueOut(**s.to_json()) for s in stats},
    )
