"""create_app(): the FastAPI application; its lifespan owns the Redis connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client.registry import CollectorRegistry

from conveyor import __version__
from conveyor.api import docs, errors
from conveyor.api.config import ApiSettings
from conveyor.api.deps import ApiState
from conveyor.api.limits import BodyLimit
from conveyor.api.routes import compat, dead, events, queues, schedules, system, tasks, workflows
from conveyor.api.schemas import ErrorOut
from conveyor.app import Conveyor
from conveyor.broker.inspect import SyncInspector
from conveyor.broker.sync_broker import SyncBroker
from conveyor.metrics import QueueCollector
from conveyor.settings import Settings

#: Error answers every route may give, documented once for the OpenAPI schema.
COMMON_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (400, "The body is not valid JSON"),
        (401, "A bearer token is required"),
        (403, "The token's scope does not allow this"),
        (413, "The body is over the size limit"),
        (415, "A body without Content-Type: application/json"),
        (422, "A field is invalid; the details name it"),
        (500, "Unexpected error (logged; no traceback is sent)"),
        (
            503,
            "Redis is unavailable (`redis_unavailable`: a write may or may not have been "
            "stored) or full (`redis_full`: nothing was stored); see Retry-After",
        ),
    )
}


def create_app(
    settings: Settings | None = None,
    api: ApiSettings | None = None,
    *,
    dashboard: bool = False,
    app: Conveyor | None = None,
) -> FastAPI:
    """The API for the deployment described by `settings` (default: from the environment);
    with `dashboard`, the dashboard too, at /dashboard, behind the same tokens.

    Given `app`, the API refuses task names its registry lacks (422 `unknown_task`) rather
    than enqueue tasks no worker can run, and its enqueues run the app's middleware; only
    these are read, the API still connects through `settings`. Without it, any valid name
    is accepted.
    """
    registry = None if app is None else app.tasks
    settings = settings or Settings.from_env()
    api = api or ApiSettings.from_env()
    mounted = None
    if dashboard:
        # imported here: the dashboard builds on this package (its errors, its schemas)
        from conveyor.dashboard.app import create_dashboard

        # a mounted app's lifespan does not run by itself: this app's runs it
        mounted = create_dashboard(settings, api)

    @asynccontextmanager
    async def lifespan(server: FastAPI) -> AsyncIterator[None]:
        conveyor = Conveyor(settings=settings, middleware=() if app is None else app.middleware)
        gauges = CollectorRegistry()
        metrics_broker = SyncBroker(settings)
        gauges.register(QueueCollector(SyncInspector(metrics_broker)))
        state = ApiState(conveyor, conveyor.async_inspector(), api, gauges, registry)
        server.state.conveyor = state
        try:
            if mounted is None:
                yield
            else:
                async with mounted.router.lifespan_context(mounted):
                    yield
        finally:
            await conveyor.aclose()
            metrics_broker.close()

    server = FastAPI(
        title="Conveyor",
        version=__version__,
        summary="Enqueue tasks, read their state, administer queues and dead letters.",
        lifespan=lifespan,
        responses=COMMON_ERRORS,
        docs_url=None,  # served by `docs`, without a CDN
        redoc_url=None,
    )
    errors.install(server)
    docs.install(server)
    for module in (compat, tasks, queues, dead, system, schedules, events, workflows):
        server.include_router(module.router)
    server.add_middleware(BodyLimit, max_bytes=api.max_body_bytes)
    if mounted is not None:
        server.mount("/dashboard", mounted)
    return server
