"""Redis clients with bounded timeouts and retries, and the error mapping at the boundary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import hiredis
import redis
import redis.asyncio
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from conveyor.broker.scripts import Call
from conveyor.errors import BrokerUnavailableError
from conveyor.settings import Settings

#: Errors that mean Redis is unreachable or stalled, as opposed to a bad command.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
#: One quick retry: redis-py's default of many retries turns a stall into a long outage.
CALL_RETRIES = 1


def _client_options(settings: Settings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.call_timeout,
        "socket_connect_timeout": min(settings.connect_timeout, settings.call_timeout * 2),
        "health_check_interval": 0,
        "client_name": "conveyor",
    }


def async_client(settings: Settings, *, blocking_margin: float = 0.0) -> redis.asyncio.Redis:
    """An asyncio client; `blocking_margin` widens the socket timeout for BLPOP connections."""
    options = _client_options(settings)
    options["socket_timeout"] += blocking_margin
    backoff = ExponentialWithJitterBackoff(base=0.05, cap=0.5)
    retry = AsyncRetry(backoff, CALL_RETRIES, (RedisConnectionError, RedisTimeoutError))
    client = redis.asyncio.Redis.from_url(settings.redis_url, retry=retry, **options)
    pool = client.connection_pool
    pool.connection_class = _packing_with_hiredis(pool.connection_class)
    return client


def pack_command(args: Sequence[Any]) -> bytes:
    """One command in the Redis protocol, packed in C by hiredis."""
    first = args[0]
    if isinstance(first, str) and " " in first:  # e.g. "CONFIG GET" as one argument
        args = (*first.split(), *args[1:])
    try:
        return hiredis.pack_command(tuple(args))  # type: ignore[no-any-return]
    except TypeError as exc:
        raise redis.DataError(str(exc)) from exc


class _HiredisPacking(AbstractConnection):
    """Packs commands in C, as redis-py's sync client does (its asyncio one packs in Python,
    which was the largest single cost of an enqueue in a profile of the API)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return [pack_command(args)]


_packing: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def _packing_with_hiredis(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """`base` (TCP, TLS or Unix socket connection) with commands packed by hiredis."""
    if base not in _packing:
        _packing[base] = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return _packing[base]


def sync_client(settings: Settings) -> redis.Redis:
    """A thread-safe synchronous client (connection pool)."""
    backoff = ExponentialWithJitterBackoff(base=0.05, cap=0.5)
    retry = Retry(backoff, CALL_RETRIES, (RedisConnectionError, RedisTimeoutError))
    return redis.Redis.from_url(settings.redis_url, retry=retry, **_client_options(settings))


def unavailable(exc: BaseException, settings: Settings) -> BrokerUnavailableError:
    """The error producers see when Redis is down or stalled."""
    url = urlsplit(settings.redis_url)
    target = url.path if url.scheme == "unix" else f"{url.hostname}:{url.port or 6379}"
    return BrokerUnavailableError(f"Redis at {target} is unavailable: {exc}")


def missing_scripts(replies: list[Any]) -> list[int]:
    """Indexes of calls that failed only because Redis lost its script cache (a restart)."""
    return [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]


def scripts_of(calls: Sequence[Call]) -> list[bytes]:
    """Sources of the scripts these calls need, each once."""
    return list({c.script.sha: c.script.source for c in calls if c.script}.values())


def first_error(replies: list[Any]) -> None:
    """Raise the first error reply of a pipeline, if any."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
