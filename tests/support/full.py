"""A private Redis that a test makes full on cue (maxmemory, policy noeviction), to see what
Conveyor does when Redis refuses writes. Private: the shared test server never gets a limit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer


@contextlib.contextmanager
def private_redis(like: RedisServer) -> Iterator[RedisServer]:
    """A fresh redis-server of the same binary as `like` (so of the same Redis version)."""
    server = RedisServer(like.binary).start()
    try:
        yield server
    finally:
        server.cleanup()


class Memory:
    """Sets the memory limit of a Redis: full now, full soon, or unlimited."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def info(self) -> dict[str, Any]:
        """INFO memory, parsed."""
        return self.r.info("memory")

    def used(self) -> int:
        """Bytes Redis uses now."""
        return int(self.info()["used_memory"])

    def fill(self) -> None:
        """Full from now on: Redis refuses every write that may grow memory."""
        self.r.config_set("maxmemory", 1)

    def limit_above_use(self, margin: int) -> None:
        """Full once Redis uses `margin` bytes more than now."""
        self.r.config_set("maxmemory", self.used() + margin)

    def free(self) -> None:
        """No limit."""
        self.r.config_set("maxmemory", 0)

    def room(self) -> int:
        """Bytes left below the limit (negative: over it)."""
        info = self.info()
        return int(info["maxmemory"]) - int(info["used_memory"])

    def is_full(self) -> bool:
        """Whether Redis uses more than its limit (and so refuses writes that grow memory)."""
        info = self.info()
        return 0 < int(info["maxmemory"]) < int(info["used_memory"])


@dataclass
class Private:
    """A private server with what a test needs of it."""

    server: RedisServer
    r: redis.Redis
    memory: Memory
    #: the test's settings, on this server
    settings: Settings


@contextlib.contextmanager
def private_setup(like: RedisServer, settings: Settings) -> Iterator[Private]:
    """A private server of `like`'s version, a client, its memory limit and `settings` on
    it; the limit is lifted before the server goes, so the test's teardown can write."""
    with private_redis(like) as server:
        client = redis.Redis.from_url(server.url)
        memory = Memory(client)
        try:
            yield Private(server, client, memory, settings.replace(redis_url=server.url))
        finally:
            memory.free()
            client.close()
