"""Health, readiness, metrics, the worker registry and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.concurrency import run_in_threadpool

from conveyor.api.deps import Api, require_read
from conveyor.api.errors import ApiError
from conveyor.api.schemas import AuditEntryOut, AuditOut, ErrorOut, Health, WorkerOut, WorkersOut
from conveyor.errors import BrokerUnavailableError

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up (it does not touch Redis)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": ErrorOut, "description": "Redis is not reachable"}},
)
async def readyz(api: Api) -> Health:
    """Redis answers: the API can take tasks."""
    try:
        await api.inspector.ping()
    except BrokerUnavailableError:
        raise ApiError(503, "redis_unavailable", "Redis is not reachable") from None
    return Health(status="ready")


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(api: Api) -> Response:
    """This process's counters, plus queue gauges read from Redis now."""

    def render() -> bytes:  # the collector reads Redis synchronously: off the event loop
        return generate_latest(REGISTRY) + generate_latest(api.gauges)

    return Response(await run_in_threadpool(render), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/workers", response_model=WorkersOut, dependencies=[Depends(require_read)])
async def workers(api: Api) -> WorkersOut:
    """Workers alive by heartbeat."""
    return WorkersOut(workers=[WorkerOut.of(w) for w in await api.inspector.workers()])


@router.get("/v1/audit", response_model=AuditOut, dependencies=[Depends(require_read)])
async def audit(
    api: Api,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AuditOut:
    """Operator actions (from the API, the dashboard and the CLI), newest first."""
    total, entries = await api.inspector.audit_log(offset, limit)
    items = [AuditEntryOut.model_validate(e, from_attributes=True) for e in entries]
    return AuditOut(total=total, offset=offset, limit=limit, items=items)
