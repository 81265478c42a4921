"""Whether the worker reaches Redis, as all its components find it: one line when Redis
goes away and one when it is back, however many components retry meanwhile."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from conveyor.redis_url import is_cluster_url, parse_redis_url

log = logging.getLogger("conveyor.worker")

#: Longest pause between attempts while Redis is unreachable.
MAX_OUTAGE_BACKOFF = 5.0


def redis_location(url: str) -> str:
    """host:port/db of a Redis URL (a socket's path; a Sentinel group's service and
    sentinels), never its password."""
    parts = urlsplit(url)
    if is_cluster_url(url):  # host:port,host:port...: the nodes, no password
        return parts.netloc.rpartition("@")[2]
    target = parse_redis_url(url)
    if target.is_sentinel:
        return f"{target.describe()}, db {target.db}"
    if parts.scheme == "unix":
        return parts.path
    db = parts.path.strip("/") or "0"
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}/{db}"


class Outage:
    """Shared by a worker's components: each reports its failures and successes, and the
    worker logs the changes only (a dead Redis made four components log ~3 lines a second).

    A success only ends an outage if its call started after the outage began: a reply in
    flight when Redis went away says nothing about Redis now.
    """

    def __init__(self, where: str = "Redis", *, connected: bool = False) -> None:
        self.where = where
        #: monotonic time the current outage began (None: reachable, or not yet tried)
        self.down_since: float | None = None
        #: whether "connected" was said (a component run on its own never says it)
        self.connected = connected

    @property
    def down(self) -> bool:
        """True while Redis is unreachable."""
        return self.down_since is not None

    def failed(self, component: str, exc: BaseException) -> None:
        """`component` could not reach Redis; logs once per outage."""
        if self.down_since is not None:
            log.debug("%s: Redis at %s still unreachable: %s", component, self.where, exc)
            return
        self.down_since = time.monotonic()
        what = "lost Redis" if self.connected else "waiting for Redis"
        log.warning(
            "%s at %s (%s); retrying with back-off up to %.0fs, quietly until it answers",
            what, self.where, exc, MAX_OUTAGE_BACKOFF,
        )  # fmt: skip

    def reached(self, since: float) -> None:
        """A call started at monotonic `since` got its answer from Redis."""
        if self.down_since is None:
            if not self.connected:
                self.connected = True
                log.info("connected to Redis at %s", self.where)
            return
        if since < self.down_since:
            return
        took = time.monotonic() - self.down_since
        self.down_since = None
        if self.connected:
            log.warning("Redis at %s is back after %.1fs", self.where, took)
        else:
            self.connected = True
            log.info("connected to Redis at %s after %.1fs", self.where, took)
