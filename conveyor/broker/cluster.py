"""The Redis Cluster transport: the same two classes as `transport.py` (the sync one here,
the asyncio one in `cluster_async.py`, the routing they share in `cluster_routing.py`),
over redis-py's cluster clients, which route each command to its slot's master and
follow a failover by refreshing their slot map.

What cannot go through a cluster pipeline is routed by this transport:

- keyless commands (TIME, INFO, CLIENT, CONFIG, PING, CLUSTER...) go, one by one, to the
  node of the key in their `Call.route`, or to the client's default node;
- WAIT (durable writes, min_replicas) goes in the pipeline, once to each master that ran
  a script call before it (and to its route's), after those calls on the same connection,
  so it counts the replicas that have them; its reply is the fewest any master confirmed;
- a script a node has not cached (each node has its own cache) is sent again as EVAL of
  its source with the same keys, which also caches it there: SCRIPT LOAD has no key and
  could not be routed to that node in a pipeline;
- an XREAD over several queues' streams is one XREAD per slot, the replies joined;
- the idle wait over several queues is one BLPOP per slot, concurrently (a BLPOP over
  keys of two slots is refused even on one node); the first to pop wins, the others are
  unblocked (CLIENT UNBLOCK) and any token they popped meanwhile is pushed back.

Blocking reads, waits, presence and pub/sub use plain connections to one node (that of
their key): a wait and the claim behind it share the queue's slot.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import ResponseError

from conveyor.broker.cluster_async import AsyncClusterTransport
from conveyor.broker.cluster_routing import (
    CLUSTER_UNAVAILABLE,
    MIGRATION_PAUSE,
    MIGRATION_WAIT,
    POLL_EVERY,
    as_one_node,
    check_replies,
    cluster_unavailable,
    fewest,
    folded,
    is_keyless,
    is_wait,
    joined,
    memory_of,
    node_settings,
    pipelined,
    resent,
    sync_cluster_client,
    target,
    with_sources,
    xread_per_slot,
    xread_streams,
)
from conveyor.broker.scripts import Arg, Call
from conveyor.broker.steps import drive
from conveyor.broker.transport import (
    READ_BLOCK_MAX,
    AsyncTransport,
    SyncTransport,
    name_refusals,
    with_memory,
)
from conveyor.errors import BrokerFullError
from conveyor.settings import Settings

# -- the sync side ------------------------------------------------------------------------


class SyncClusterTransport:
    """Blocking side, for producers and tools without an event loop."""

    def __init__(self, settings: Settings, client: redis.cluster.RedisCluster | None = None):
        self.settings = settings
        try:  # redis-py's sync client finds the slots' nodes as it is made
            self.client = client or sync_cluster_client(settings)
        except CLUSTER_UNAVAILABLE as exc:
            raise cluster_unavailable(exc, settings) from exc
        self._reader: redis.cluster.RedisCluster | None = None

    def execute(
        self, calls: Sequence[Call], *, raise_errors: bool = True, blocks: bool = False
    ) -> list[Any]:
        """Send calls as `SyncTransport.execute` does, each to its slot's node."""
        try:
            replies = name_refusals(drive(with_sources(calls), self._reading(blocks)))
            if any(isinstance(reply, BrokerFullError) for reply in replies):
                replies = self._with_memory(calls, replies)
        except CLUSTER_UNAVAILABLE as exc:
            raise cluster_unavailable(exc, self.settings) from exc
        return check_replies(replies, self.settings, raise_errors)

    def _reading(self, blocks: bool) -> Callable[[Sequence[Call]], list[Any]]:
        def send(calls: Sequence[Call]) -> list[Any]:
            return [self._xread(c, blocks) if xread_streams(c) else r
                    for c, r in zip(calls, self._send(calls), strict=True)]  # fmt: skip

        return lambda calls: self._settled(send, calls)

    @staticmethod
    def _settled(send: Callable[[Sequence[Call]], list[Any]], calls: Sequence[Call]) -> list[Any]:
        """`send(calls)`, sending again those whose slot is migrating (see `unsettled`),
        with a growing pause, until they run or MIGRATION_WAIT passes."""
        replies = send(calls)
        deadline, pause = time.monotonic() + MIGRATION_WAIT, MIGRATION_PAUSE
        while (again := resent(calls, replies)) and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
            for i, reply in zip(again, send([calls[i] for i in again]), strict=True):
                replies[i] = fewest(replies[i], reply) if is_wait(calls[i]) else reply
        return replies

    def _send(self, calls: Sequence[Call]) -> list[Any]:
        replies: list[Any] = [None] * len(calls)
        entries = pipelined(calls, self.client.get_node_from_key)
        if entries:
            pipe = self.client.pipeline()  # type: ignore[no-untyped-call]
            for _, call, node in entries:
                pipe.execute_command(*call.args, **({"target_nodes": node} if node else {}))
            for i, reply in folded(entries, pipe.execute(raise_on_error=False)).items():
                replies[i] = reply
        for i, call in enumerate(calls):
            if is_keyless(call) and not is_wait(call):
                replies[i] = self._one(self.client, call)
        return replies

    def _one(self, client: redis.cluster.RedisCluster, call: Call) -> Any:
        node = target(client, call)
        if node is None:
            return ResponseError(f"no master {call.node} in the Cluster")
        try:
            return as_one_node(client.execute_command(*call.args, target_nodes=node))  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            return exc

    def _xread(self, call: Call, blocks: bool) -> Any:
        """One XREAD per slot; blocking over several slots looks again every POLL_EVERY s."""
        per_slot = xread_per_slot(call, blocking=True)
        if len(per_slot) == 1:
            return self._read(per_slot[0], blocks)
        once = xread_per_slot(call, blocking=False)
        options = xread_streams(call)[0]  # type: ignore[index]
        upper = [str(o).upper() for o in options]
        block = int(options[upper.index("BLOCK") + 1]) / 1000 if "BLOCK" in upper else 0.0
        deadline = time.monotonic() + block
        while True:
            found = joined([self._read(c, False) for c in once])
            if found is not None or time.monotonic() >= deadline:
                return found
            time.sleep(POLL_EVERY)

    def _read(self, call: Call, blocks: bool) -> Any:
        client = self.client
        if blocks:
            if self._reader is None:
                self._reader = sync_cluster_client(self.settings, blocking_margin=READ_BLOCK_MAX)
            client = self._reader
        try:
            return client.execute_command(*call.args)  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            return exc

    def _with_memory(self, calls: Sequence[Call], replies: list[Any]) -> list[Any]:
        """The figures of the node that refused the first write at maxmemory (a courtesy)."""
        with contextlib.suppress(*CLUSTER_UNAVAILABLE):
            return with_memory(replies, self._one(self.client, memory_of(calls, replies)))
        return replies

    def queue_only(self, commands: Sequence[Sequence[Arg]]) -> list[str]:
        """As `SyncTransport.queue_only` (doctor's ACL probe), on the node of the first
        argument under the prefix: MULTI queues only the keys of its own node's slots."""
        key = next(
            (str(a) for args in commands for a in args[1:]
             if str(a).startswith(f"{self.settings.prefix}:")),
            self.settings.prefix,
        )  # fmt: skip
        try:
            node = self.client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        except CLUSTER_UNAVAILABLE as exc:
            raise cluster_unavailable(exc, self.settings) from exc
        plain = SyncTransport(node_settings(self.settings, node.host, int(node.port)))
        try:
            return plain.queue_only(commands)
        finally:
            plain.close()

    def server_address(self) -> str:
        """The masters calls go to now, host:port each."""
        try:
            primaries = self.client.get_primaries()  # type: ignore[no-untyped-call]
        except CLUSTER_UNAVAILABLE as exc:
            raise cluster_unavailable(exc, self.settings) from exc
        return ",".join(f"{n.host}:{n.port}" for n in primaries)

    def close(self) -> None:
        """Close every connection."""
        self.client.close()
        if self._reader is not None:
            self._reader.close()


# -- the choice ---------------------------------------------------------------------------

#: Either sync transport: a standalone Redis or a Cluster.
AnySyncTransport = SyncTransport | SyncClusterTransport
#: Either asyncio transport.
AnyAsyncTransport = AsyncTransport | AsyncClusterTransport


def sync_transport(settings: Settings) -> AnySyncTransport:
    """The sync transport the settings call for: Cluster or standalone."""
    return SyncClusterTransport(settings) if settings.cluster else SyncTransport(settings)


def async_transport(settings: Settings, *, name: str = "conveyor") -> AnyAsyncTransport:
    """The asyncio transport the settings call for; `name` as AsyncTransport's."""
    if settings.cluster:
        return AsyncClusterTransport(settings, name=name)
    return AsyncTransport(settings, name=name)
