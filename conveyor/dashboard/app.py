"""create_dashboard(): the dashboard's ASGI app; its lifespan owns the Redis connections.

Pages are one shell (`static/index.html`) that our own script fills from the JSON routes;
every path the page routes to answers with the shell, so a reload or a shared link works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import cache
from importlib import resources

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from conveyor.api import errors
from conveyor.api.config import ApiSettings
from conveyor.api.routes.compat import seed_stats
from conveyor.api.schemas import SeedStats
from conveyor.app import Conveyor
from conveyor.dashboard import acts, reads
from conveyor.dashboard.auth import Guard
from conveyor.dashboard.live import Live
from conveyor.dashboard.state import Dash, DashboardState, viewer
from conveyor.settings import Settings

#: The page's own paths (client-side routes); each answers with the shell.
PAGES = (
    "/", "/workers", "/schedules", "/queues/{name}", "/tasks/{task_id}", "/dead", "/audit",
    "/login",
)  # fmt: skip
#: No script, style or connection from anywhere but this app (no CDN, no inline script).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def create_dashboard(
    settings: Settings | None = None, api: ApiSettings | None = None, *, read_only: bool = False
) -> FastAPI:
    """The dashboard of the deployment described by `settings`, behind the API's tokens
    (`api`, default: from the environment); `read_only` hides and refuses every action."""
    settings = settings or Settings.from_env()
    api = api or ApiSettings.from_env()
    guard = Guard(api.tokens, read_only)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        conveyor = Conveyor(settings=settings)
        inspector = conveyor.async_inspector()
        # lost: three missed heartbeats (the registry forgets it when its entry expires)
        live = Live(inspector, lost_after=3 * settings.heartbeat_interval)
        app.state.dashboard = DashboardState(conveyor, inspector, guard, live)
        try:
            yield
        finally:
            await conveyor.aclose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    errors.install(app)
    app.include_router(reads.router)
    app.include_router(acts.router)
    app.mount("/static", StaticFiles(packages=[("conveyor.dashboard", "static")]), "static")
    for path in PAGES:
        app.add_api_route(path, shell, methods=["GET"], response_class=HTMLResponse)
    app.add_api_route("/stats", stats, methods=["GET"], response_model=SeedStats)
    app.middleware("http")(_secure)
    return app


async def shell(request: Request) -> HTMLResponse:
    """The page, its base URL set to where the dashboard is mounted."""
    root = request.scope.get("root_path", "").rstrip("/")
    body = _shell_template().replace("{{ROOT}}", root)
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})


async def stats(dash: Dash, request: Request) -> SeedStats:
    """The seeds' monitor counters, as the API's GET /stats."""
    await viewer(request)
    return seed_stats(await dash.inspector.queue_stats())


@cache
def _shell_template() -> str:
    return resources.files("conveyor.dashboard").joinpath("static/index.html").read_text()


async def _secure(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
