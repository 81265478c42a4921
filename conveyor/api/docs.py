"""/docs and /redoc with their assets served from here: FastAPI's defaults load them from
a CDN, so the pages are blank on a machine without Internet access."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the assets are mounted: Swagger UI, ReDoc and a favicon, as fastapi-offline
#: packages them (a current Swagger UI, which renders the OpenAPI 3.1 FastAPI writes).
ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    """Serve /docs, its OAuth2 redirect and /redoc on `app` (built with docs_url and
    redoc_url None), with every asset from `ASSETS`."""
    static = files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(static)), name="docs-assets")
    title = app.title

    async def swagger(request: Request) -> HTMLResponse:
        base = _base(request)
        return get_swagger_ui_html(
            openapi_url=f"{base}{app.openapi_url}",
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=f"{base}/docs/oauth2-redirect",
            swagger_js_url=f"{base}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{base}{ASSETS}/favicon.png",
        )

    async def redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        base = _base(request)
        return get_redoc_html(
            openapi_url=f"{base}{app.openapi_url}",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{base}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    for path, endpoint in (("/docs", swagger), ("/docs/oauth2-redirect", redirect),
                           ("/redoc", redoc)):  # fmt: skip
        app.add_api_route(path, endpoint, include_in_schema=False, methods=["GET"])


def _base(request: Request) -> str:
    """The path the app is served under (behind a proxy that sets root_path)."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")
