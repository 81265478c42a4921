"""Fixtures of the worker tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conveyor.tools.embedded import RedisServer


@pytest.fixture
def outage(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The shared server, running again on its port after the test whatever happened."""
    try:
        yield redis_server
    finally:
        if not redis_server.ping():
            redis_server.start()
