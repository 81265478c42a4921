"""`/v1/schedules`: list periodic schedules, upsert, remove, pause, resume and run them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response

from conveyor.api.deps import Api, Operator, require_read
from conveyor.api.errors import ApiError
from conveyor.api.routes.common import JsonRoute, enqueued
from conveyor.api.schemas import (
    Enqueued,
    ErrorOut,
    ScheduleId,
    ScheduleIn,
    ScheduleOut,
    SchedulesOut,
    ScheduleUpserted,
)
from conveyor.broker.schedules import ScheduleNotFoundError
from conveyor.schedule import ScheduleInfo
from conveyor.schedules import build_schedule, schedule_message

router = APIRouter(prefix="/v1/schedules", tags=["schedules"], route_class=JsonRoute)
IdParam = Annotated[ScheduleId, Path(description="A schedule id")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No schedule has this id"}
}


def _out(info: ScheduleInfo) -> ScheduleOut:
    return ScheduleOut(**info.to_json())


async def _acting(call: Any) -> ScheduleInfo:
    """Await an Inspector call on one schedule, answering 404 if it is unknown."""
    try:
        info: ScheduleInfo = await call
    except ScheduleNotFoundError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    return info


@router.get("", response_model=SchedulesOut, dependencies=[Depends(require_read)])
async def list_schedules(api: Api) -> SchedulesOut:
    """Every schedule with its next and last run, by id."""
    return SchedulesOut(schedules=[_out(i) for i in await api.inspector.schedules.list()])


@router.get(
    "/{schedule_id}",
    response_model=ScheduleOut,
    responses=NOT_FOUND,
    dependencies=[Depends(require_read)],
)
async def get_schedule(schedule_id: IdParam, api: Api) -> ScheduleOut:
    """One schedule."""
    return _out(await _acting(api.inspector.schedules.get(schedule_id)))


@router.put(
    "/{schedule_id}",
    response_model=ScheduleUpserted,
    responses={201: {"model": ScheduleUpserted, "description": "Created"}},
)
async def upsert_schedule(
    schedule_id: IdParam, body: ScheduleIn, response: Response, api: Api, actor: Operator
) -> ScheduleUpserted:
    """Create or replace a schedule (201 when created). Its state stays: a paused one
    stays paused, and ticks count from now only when the timing changes. Given the app,
    the API refuses a task its registry lacks (422)."""
    fields = body.model_dump(exclude={"task"})
    schedule = build_schedule(schedule_id, body.task, api.registry, **fields)
    result = await api.inspector.schedules.upsert(schedule, actor=actor)
    if result == "created":
        response.status_code = 201
    info = await _acting(api.inspector.schedules.get(schedule_id))
    return ScheduleUpserted(**info.to_json(), result=result)


@router.delete("/{schedule_id}", status_code=204, responses=NOT_FOUND)
async def remove_schedule(schedule_id: IdParam, api: Api, actor: Operator) -> Response:
    """Delete a schedule. One still declared in running code comes back within a minute:
    remove it from the code first (or pause it)."""
    try:
        await api.inspector.schedules.remove(schedule_id, actor=actor)
    except ScheduleNotFoundError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    return Response(status_code=204)


@router.post("/{schedule_id}/pause", response_model=ScheduleOut, responses=NOT_FOUND)
async def pause_schedule(schedule_id: IdParam, api: Api, actor: Operator) -> ScheduleOut:
    """No tick fires until resumed (a redeploy keeps it paused)."""
    return _out(await _acting(api.inspector.schedules.set_paused(schedule_id, True, actor=actor)))


@router.post("/{schedule_id}/resume", response_model=ScheduleOut, responses=NOT_FOUND)
async def resume_schedule(schedule_id: IdParam, api: Api, actor: Operator) -> ScheduleOut:
    """Fire again from the next tick; the ticks due while paused are not fired."""
    return _out(await _acting(api.inspector.schedules.set_paused(schedule_id, False, actor=actor)))


@router.post("/{schedule_id}/run", status_code=202, response_model=Enqueued, responses=NOT_FOUND)
async def run_schedule(schedule_id: IdParam, api: Api, actor: Operator) -> Enqueued:
    """Enqueue the schedule's task now, once, outside its ticks."""
    info = await _acting(api.inspector.schedules.get(schedule_id))
    message = schedule_message(info.schedule, api.conveyor.tasks)
    [handle] = await api.conveyor.enqueue_many_async([message])
    await api.inspector.schedules.ran(schedule_id, handle.id, actor=actor)
    return enqueued(handle)
