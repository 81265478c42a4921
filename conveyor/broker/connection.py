"""Redis clients for the transport: one server, or the master of a Sentinel group, with or
without TLS, every connection with the same timeouts, retry policy and command packing.

A Sentinel client asks the sentinels for the master's address on every new connection,
and its connections drop themselves when they find a demoted master (READONLY): the one
retry on a connection error reconnects to whichever master the sentinels name then, so a
failover is followed without a restart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast

import hiredis
import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection as AsyncConnection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelConnectionPool as AsyncSentinelPool
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from conveyor.redis_url import RedisTarget, parse_redis_url
from conveyor.settings import Settings

#: One quick retry: redis-py's default of many retries turns a stall into a long outage.
CALL_RETRIES = 1
_RETRIED = (RedisConnectionError, RedisTimeoutError)


def _options(settings: Settings, name: str, blocking_margin: float) -> dict[str, Any]:
    return {
        "socket_timeout": settings.call_timeout + blocking_margin,
        "socket_connect_timeout": min(settings.connect_timeout, settings.call_timeout * 2),
        "health_check_interval": 0,
        "client_name": name,
    }


def _tls(settings: Settings) -> dict[str, Any]:
    """redis-py's TLS options from the settings (a rediss:// target): the server's
    certificate is always verified, against `redis_tls_ca` or the system's CAs."""
    files = {
        "ssl_ca_certs": settings.redis_tls_ca,
        "ssl_certfile": settings.redis_tls_cert,
        "ssl_keyfile": settings.redis_tls_key,
    }
    return {"ssl_cert_reqs": "required", **{k: v for k, v in files.items() if v}}


def _sentinel_options(target: RedisTarget, settings: Settings) -> dict[str, Any]:
    """How to reach the sentinels themselves: their own credentials, TLS as the master's."""
    options: dict[str, Any] = {
        "socket_timeout": settings.call_timeout,
        "socket_connect_timeout": min(settings.connect_timeout, settings.call_timeout * 2),
        "username": target.sentinel_username,
        "password": target.sentinel_password,
    }
    if target.tls:
        options.update(ssl=True, **_tls(settings))
    return options


def _master_options(target: RedisTarget, settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "db": target.db,
        "username": target.username,
        "password": target.password,
    }
    if target.tls:
        options.update(ssl=True, **_tls(settings))
    return options


class _SentinelMaster(redis.Redis):
    """A master's client that closes its sentinels' connections with its own."""

    def close(self) -> None:
        super().close()
        for sentinel in cast(
            SentinelConnectionPool, self.connection_pool
        ).sentinel_manager.sentinels:
            sentinel.close()


class _AsyncSentinelMaster(redis.asyncio.Redis):
    """A master's asyncio client that closes its sentinels' connections with its own."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = cast(AsyncSentinelPool, self.connection_pool)
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


def _backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(base=0.05, cap=0.5)


def sync_client(
    settings: Settings, *, blocking_margin: float = 0.0, name: str = "conveyor"
) -> redis.Redis:
    """A thread-safe synchronous client (connection pool); `blocking_margin` widens the
    socket timeout for blocking reads."""
    target = parse_redis_url(settings.redis_url)
    options = _options(settings, name, blocking_margin)
    options["retry"] = Retry(_backoff(), CALL_RETRIES, _RETRIED)
    if not target.is_sentinel:
        tls = _tls(settings) if target.tls else {}
        return redis.Redis.from_url(target.url, **options, **tls)
    sentinels = Sentinel(target.sentinels, sentinel_kwargs=_sentinel_options(target, settings))
    options.update(_master_options(target, settings))
    master = sentinels.master_for(target.service, redis_class=_SentinelMaster, **options)
    return cast(redis.Redis, master)


def async_client(
    settings: Settings, *, blocking_margin: float = 0.0, name: str = "conveyor"
) -> redis.asyncio.Redis:
    """An asyncio client; `blocking_margin` widens the socket timeout for BLPOP connections,
    and `name` is what CLIENT LIST shows for its connections."""
    target = parse_redis_url(settings.redis_url)
    options = _options(settings, name, blocking_margin)
    options["retry"] = AsyncRetry(_backoff(), CALL_RETRIES, _RETRIED)
    client: redis.asyncio.Redis
    if not target.is_sentinel:
        tls = _tls(settings) if target.tls else {}
        client = redis.asyncio.Redis.from_url(target.url, **options, **tls)
    else:
        sentinel_options = _sentinel_options(target, settings)
        sentinels = AsyncSentinel(target.sentinels, sentinel_kwargs=sentinel_options)
        options.update(_master_options(target, settings))
        client = sentinels.master_for(target.service, redis_class=_AsyncSentinelMaster, **options)
    pool = client.connection_pool
    pool.connection_class = _packing_with_hiredis(pool.connection_class)
    return client


def server_address(client: redis.Redis, settings: Settings) -> str:
    """Where `client` sends its commands now: the master the sentinels name (asked now),
    or the URL's server."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        host, port = pool.get_master_address()  # type: ignore[no-untyped-call]
        return f"{host}:{port}"
    return parse_redis_url(settings.redis_url).describe()


#: How redis-py names a sentinel's client in MasterNotFoundError: its whole repr.
_CLIENT_REPR = re.compile(
    r"<redis\.(?:asyncio\.)?client\.Redis\(.*?host=([^,]+),port=(\d+).*?\)>\)>\)>"
)


def error_text(exc: BaseException) -> str:
    """`exc` as text, each sentinel's client repr (a few hundred characters of options)
    shortened to `sentinel host:port`."""
    return _CLIENT_REPR.sub(lambda m: f"sentinel {m[1]}:{m[2]}", str(exc))


def pack_command(args: Sequence[Any]) -> bytes:
    """One command in the Redis protocol, packed in C by hiredis."""
    first = args[0]
    if isinstance(first, str) and " " in first:  # e.g. "CONFIG GET" as one argument
        args = (*first.split(), *args[1:])
    try:
        return hiredis.pack_command(tuple(args))  # type: ignore[no-any-return]
    except TypeError as exc:
        raise redis.DataError(str(exc)) from exc


class _HiredisPacking(AsyncConnection):
    """Packs commands in C, as redis-py's sync client does (its asyncio one packs in Python,
    which was the largest single cost of an enqueue in a profile of the API)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return [pack_command(args)]


_packing: dict[type[AsyncConnection], type[AsyncConnection]] = {}


def _packing_with_hiredis(base: type[AsyncConnection]) -> type[AsyncConnection]:
    """`base` (TCP, TLS, Unix socket or Sentinel-managed connection) with commands packed
    by hiredis."""
    if base not in _packing:
        _packing[base] = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return _packing[base]
