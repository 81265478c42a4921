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


def legs(client: redis.Redis) -> tuple[float, float]:
    """Seconds from sending TIME until Redis ran it, and from then until its reply came
    back: Redis and this test read one clock, the machine's, so each way is seen apart."""
    sent = time.time()
    seconds, micros = client.time()
    ran = seconds + micros / 1e6
    return ran - sent, time.time() - ran


#: The injected delay: each way takes one, and a delay applied twice would take two; a
#: loaded machine adds far less than a whole one to a loopback leg.
DELAY = 1.0
#: Redis' TIME is in microseconds and the test's clock read may round the other way.
CLOCK_GRAIN = 0.001


def test_latency_delays_each_direction(
    proxied: tuple[RedisServer, ChaosProxy, redis.Redis],
) -> None:
    _, proxy, _ = proxied
    client = redis.Redis.from_url(proxy.url, socket_timeout=10 * DELAY)
    try:
        assert sum(legs(client)) < DELAY  # not delayed at all
        proxy.latency(DELAY)
        request, reply = legs(client)
        # once each way: the request reaches Redis a delay late, and so does the reply us
        assert DELAY - CLOCK_GRAIN <= request < 2 * DELAY, request
        assert DELAY - CLOCK_GRAIN <= reply < 2 * DELAY, reply
        proxy.normal()
        assert sum(legs(client)) < DELAY
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
