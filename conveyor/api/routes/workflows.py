"""`/v1/workflows`: enqueue a workflow; the workflows enqueued; one workflow's state,
result, and each node's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response

from conveyor.api.deps import Api, ApiState, require_read, require_write
from conveyor.api.errors import ApiError
from conveyor.api.routes.common import to_message
from conveyor.api.schemas import (
    ErrorOut,
    NewWorkflowIn,
    WorkflowEnqueued,
    WorkflowId,
    WorkflowOut,
    WorkflowPage,
    WorkflowStepIn,
    WorkflowSummaryOut,
)
from conveyor.canvas import Step, chain, chord, group
from conveyor.producer import Message

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])


@router.post(
    "",
    status_code=202,
    response_model=WorkflowEnqueued,
    dependencies=[Depends(require_write)],
)
async def create_workflow(
    body: NewWorkflowIn,
    response: Response,
    api: Api,
    traceparent: Annotated[str | None, Header(description="W3C trace context")] = None,
) -> WorkflowEnqueued:
    """Enqueue a workflow: `{"workflow": {"chain": [{"task": {...}}, {"group": [...]}]}}`,
    steps nested as deep as needed (`chord`: `{"group": [...], "callback": {...}}`); its
    first tasks start at once. Each task step takes the fields of `POST /v1/tasks`."""
    if body.workflow.task is not None:
        raise ApiError(422, "invalid_request", "a workflow is a chain, group or chord")
    workflow = _step(body.workflow, api, "workflow", traceparent)
    assert not isinstance(workflow, Message)  # refused above
    handle = await api.conveyor.enqueue_async(workflow, on_failure=body.on_failure)
    response.headers["Location"] = f"/v1/workflows/{handle.id}"
    return WorkflowEnqueued(id=handle.id)


def _step(step: WorkflowStepIn, api: ApiState, at: str, trace: str | None) -> Step:
    """The canvas object of a validated step; `at` names it in errors (`workflow.chain.1`)."""
    if step.task is not None:
        return to_message(step.task, api, f"{at}.task.name", trace)
    if step.chain is not None:
        return chain(*(_step(s, api, f"{at}.chain.{i}", trace) for i, s in enumerate(step.chain)))
    if step.group is not None:
        return group(_step(s, api, f"{at}.group.{i}", trace) for i, s in enumerate(step.group))
    assert step.chord is not None  # the schema lets exactly one through
    members = [
        _step(s, api, f"{at}.chord.group.{i}", trace) for i, s in enumerate(step.chord.group)
    ]
    return chord(members, _step(step.chord.callback, api, f"{at}.chord.callback", trace))


@router.get("", response_model=WorkflowPage, dependencies=[Depends(require_read)])
async def list_workflows(
    api: Api,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> WorkflowPage:
    """The workflows enqueued, newest first, with their states ("expired" once their keys
    are gone, after they ended)."""
    total, page = await api.inspector.workflows(offset, limit)
    items = [
        WorkflowSummaryOut(id=w.id, created_at=datetime.fromtimestamp(w.created_at, UTC),
                           state=w.state)  # type: ignore[arg-type]
        for w in page
    ]  # fmt: skip
    return WorkflowPage(total=total, offset=offset, limit=limit, items=items)


@router.get(
    "/{workflow_id}",
    response_model=WorkflowOut,
    responses={404: {"model": ErrorOut, "description": "Unknown, or expired after it ended"}},
    dependencies=[Depends(require_read)],
)
async def get_workflow(
    workflow_id: Annotated[WorkflowId, Path(description="A workflow id")], api: Api
) -> WorkflowOut:
    """A workflow: its state, result or error, and each node's state and result."""
    view = await api.inspector.workflow(workflow_id)
    if view is None:
        raise ApiError(404, "not_found", f"no workflow {workflow_id!r}")
    found = view.to_json()
    for field in ("created_at", "finished_at"):
        if found[field] is not None:
            found[field] = datetime.fromtimestamp(found[field], UTC)
    return WorkflowOut.model_validate(found)
