"""`/v1/workflows`: the workflows enqueued; one workflow's state, result, and each node's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from conveyor.api.deps import Api, require_read
from conveyor.api.errors import ApiError
from conveyor.api.schemas import (
    ErrorOut,
    WorkflowId,
    WorkflowOut,
    WorkflowPage,
    WorkflowSummaryOut,
)

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])


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
