"""What the dashboard's routes depend on: its state, the viewer, the operator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from conveyor.app import Conveyor
from conveyor.broker.audit import Actor
from conveyor.broker.inspect import AsyncInspector
from conveyor.dashboard.auth import Guard, Session
from conveyor.dashboard.live import Live


@dataclass(slots=True)
class DashboardState:
    """Owned by the dashboard's lifespan: one Redis client pool for the process."""

    conveyor: Conveyor
    inspector: AsyncInspector
    guard: Guard
    live: Live


# coroutines, although they never await: FastAPI would run plain functions in a thread
async def state(request: Request) -> DashboardState:
    """The dashboard's state (a dependency)."""
    current: DashboardState = request.app.state.dashboard
    return current


async def viewer(request: Request) -> Session:
    """The viewer (401 without a valid token when tokens are set)."""
    current: DashboardState = request.app.state.dashboard
    return current.guard.session(request)


async def operator(request: Request) -> Actor:
    """The operator of an action (401/403/415 unless allowed, see Guard.actor)."""
    current: DashboardState = request.app.state.dashboard
    return current.guard.actor(request)


Dash = Annotated[DashboardState, Depends(state)]
Operator = Annotated[Actor, Depends(operator)]
