"""`/v1/events`: the queues' state changes as server-sent events, resumable by id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from conveyor import serializers
from conveyor.api.deps import Api, require_read
from conveyor.api.errors import ApiError
from conveyor.api.schemas import QueueName, TaskName
from conveyor.broker.events import parse_cursor
from conveyor.broker.inspect import AsyncInspector
from conveyor.events import Event

router = APIRouter(prefix="/v1/events", tags=["events"])
#: `id: ...` of an event, as an EventSource resends it in Last-Event-ID.
CURSOR_PATTERN = r"^\d{1,20}(-\d{1,20})?$"
STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A text/event-stream: per event `id: <event id>` and `data: <JSON>`",
        "content": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "description": "One server-sent event; `data` is the event as JSON",
                    "properties": {
                        "id": {"type": "string", "pattern": CURSOR_PATTERN},
                        "event": {"type": "string"},
                        "data": {"type": "string", "contentMediaType": "application/json"},
                        "retry": {"type": "integer"},
                    },
                }
            }
        },
    }
}


@router.get(
    "", response_class=StreamingResponse, responses=STREAM, dependencies=[Depends(require_read)]
)
async def stream_events(
    request: Request,
    api: Api,
    queue: Annotated[list[QueueName] | None, Query(description="Only these queues")] = None,
    task: Annotated[list[TaskName] | None, Query(description="Only these task names")] = None,
    after: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="Start after this event id (default: now)"),
    ] = None,
    duration: Annotated[
        float, Query(gt=0, le=3600, description="Seconds before the server ends the stream")
    ] = 300,
    last_event_id: Annotated[str | None, Header(description="Resume after this id")] = None,
) -> StreamingResponse:
    """Task state changes (enqueued, started, progress, succeeded, retrying, dead, ...) as
    they happen. Each event's `id` is its cursor: an EventSource that reconnects sends it
    back as `Last-Event-ID` and misses nothing the stream still holds."""
    cursor = last_event_id or after
    if cursor is not None:
        try:
            parse_cursor(cursor)
        except ValueError as exc:
            raise ApiError(422, "invalid_cursor", str(exc)) from None
    else:
        cursor = await api.inspector.latest_event(queue)
    events = _sse(request, api.inspector, queue, set(task or ()), cursor, duration)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


async def _sse(
    request: Request,
    inspector: AsyncInspector,
    queues: list[str] | None,
    names: set[str],
    cursor: str,
    duration: float,
) -> AsyncIterator[str]:
    """Read, block, send: until the client leaves or `duration` s passed."""
    yield "retry: 1000\n\n"
    async for page in inspector.follow(queues, cursor, duration):
        if await request.is_disconnected():
            return
        if not page:
            yield ": keep-alive\n\n"
        for event in page:
            if not names or event.task in names:
                yield _message(event)


def _message(event: Event) -> str:
    return f"id: {event.id}\ndata: {serializers.dumps(event.as_dict()).decode()}\n\n"
