"""Fixtures of the API tests: the real app with its lifespan, reached through httpx."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest

from conveyor.api import create_app
from conveyor.api.config import ApiSettings
from conveyor.settings import Settings

#: Makes a client on an app built with these API settings (default: open, default limits).
ClientFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@contextlib.asynccontextmanager
async def api_client(
    settings: Settings, api: ApiSettings | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app, inside its lifespan (which opens the Redis clients)."""
    app = create_app(settings, api or ApiSettings())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the app with default API settings, on this test's keyspace."""
    async with api_client(settings) as made:
        yield made


@pytest.fixture
def make_client(settings: Settings) -> ClientFactory:
    """`async with make_client(ApiSettings(...)) as client:` an app with other API settings."""

    def make(api: ApiSettings | None = None) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return api_client(settings, api)

    return make
