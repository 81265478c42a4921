"""What routes depend on: the shared state, and the scope checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from prometheus_client.registry import CollectorRegistry

from conveyor.api.config import ApiSettings, Scope
from conveyor.api.security import actor_of, authorize
from conveyor.app import Conveyor
from conveyor.broker.audit import Actor
from conveyor.broker.inspect import AsyncInspector


@dataclass(slots=True)
class ApiState:
    """Owned by the app's lifespan: one Redis client pool for the process."""

    conveyor: Conveyor
    inspector: AsyncInspector
    settings: ApiSettings
    gauges: CollectorRegistry
    #: The task names producers may use, when the API was given the app (None: any).
    registry: Mapping[str, object] | None = None


# The dependencies are coroutines although they never await: FastAPI would run a plain
# function in its thread pool, a thread handoff per request for nothing.
async def state(request: Request) -> ApiState:
    """The API's state (a dependency)."""
    current: ApiState = request.app.state.conveyor
    return current


#: The state, as a route parameter: `api: Api`.
Api = Annotated[ApiState, Depends(state)]


async def require_read(request: Request) -> None:
    """Any valid token (when tokens are configured)."""
    authorize(request, _settings(request).tokens, Scope.READ)


async def require_write(request: Request) -> None:
    """A token with the write scope (when tokens are configured)."""
    authorize(request, _settings(request).tokens, Scope.WRITE)


async def writer(request: Request) -> Actor:
    """A token with the write scope (when tokens are configured), as the audit log's actor."""
    grant = authorize(request, _settings(request).tokens, Scope.WRITE)
    return actor_of(request, grant, "api")


#: The operator acting through the API, as a route parameter: `actor: Operator`.
Operator = Annotated[Actor, Depends(writer)]


def _settings(request: Request) -> ApiSettings:
    current: ApiState = request.app.state.conveyor
    return current.settings
