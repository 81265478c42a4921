"""The chaos proxy does what each fault says, against a real redis-server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from conveyor.tools.embedded import RedisServer
from tests.chaos.proxy import ChaosProxy
from tests.chaos.runner import redis_binary

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


@pytest.fixture
def proxied() -> Iterator[tuple[RedisServer, ChaosProxy, redis.Redis]]:
    """A private redis-server, the proxy in front of it, a client through the proxy."""
    server = RedisServer(redis_binary()).start()
    proxy = ChaosProxy(server.port)
    client = redis.Redis.from_url(proxy.url, socket_timeout=1.0, retry_on_timeout=False)
    try:
        yield server, proxy, client
    finally:
        client.close()
        proxy.close()
        server.cleanup()


def round_trip(client: redis.Redis) -> float:
    began = time.monotonic()
    assert client.ping()
    return time.monotonic() - began


#: The injected delay: one each way is 2 of them, a third would be 3, and either side
#: leaves a whole delay for what a loaded machine adds to a loopback round trip.
DELAY = 1.0


def test_latency_delays_each_direction(
    proxied: tuple[RedisServer, ChaosProxy, redis.Redis],
) -> None:
    _, proxy, _ = proxied
    client = redis.Redis.from_url(proxy.url, socket_timeout=10 * DELAY)
    try:
        assert round_trip(client) < DELAY  # not delayed at all
        proxy.latency(DELAY)
        assert 2 * DELAY <= round_trip(client) < 3 * DELAY  # once each way
        proxy.normal()
        assert round_trip(client) < DELAY
    finally:
        client.close()


def test_drop_all_closes_open_connections_and_accepts_new_ones(
    proxied: tuple[RedisServer, ChaosProxy, redis.Redis],
) -> None:
    _, proxy, client = proxied
    client.ping()
    assert proxy.drop_all() >= 1
    fresh = redis.Redis.from_url(proxy.url, socket_timeout=1.0)
    try:
        assert fresh.ping()
    finally:
        fresh.close()


def test_blackhole_swallows_traffic_until_healed(
    proxied: tuple[RedisServer, ChaosProxy, redis.Redis],
) -> None:
    _, proxy, client = proxied
    client.set("k", "before")
    proxy.blackhole()
    with pytest.raises(redis.TimeoutError):
        client.set("k", "during")
    assert proxy.stats.swallowed_bytes > 0
    proxy.normal()
    assert client.get("k") == b"before"  # nothing got through


def test_redis_down_closes_the_client_connection(
    proxied: tuple[RedisServer, ChaosProxy, redis.Redis],
) -> None:
    server, _, client = proxied
    server.kill()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    server.start()
    assert client.ping()
