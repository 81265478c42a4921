"""The Redis Cluster transport: the same two classes as `transport.py`, over redis-py's
cluster clients, which route each command to its slot's master and follow MOVED, ASK and
a failover by refreshing their slot map.

What cannot go through a cluster pipeline is routed here:

- keyless commands (TIME, INFO, CLIENT, CONFIG, PING, WAIT...) go, one by one, to the node
  of the key in their `Call.route`, or to the client's default node;
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

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast
from urllib.parse import quote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterError,
    NoScriptError,
    RedisClusterException,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from conveyor.broker.scripts import Call
from conveyor.broker.steps import Steps, drive, drive_async
from conveyor.broker.transport import (
    CALL_RETRIES,
    MEMORY,
    READ_BLOCK_MAX,
    UNAVAILABLE,
    AsyncTransport,
    SyncTransport,
    _backoff,
    _client_options,
    async_client,
    first_error,
    name_refusals,
    pack_command,
    with_memory,
)
from conveyor.errors import BrokerFullError, BrokerUnavailableError, ConfigurationError
from conveyor.settings import CLUSTER_SCHEME, ClusterAddress, Settings, cluster_nodes

#: Errors that mean the Cluster (or the node of a slot) cannot answer now.
CLUSTER_UNAVAILABLE = (*UNAVAILABLE, ClusterError, RedisClusterException)
#: Commands without a key: a cluster pipeline cannot route them, so they go one by one.
KEYLESS = frozenset({"TIME", "PING", "INFO", "CONFIG", "CLIENT", "MEMORY", "DBSIZE", "CLUSTER"})
#: How often a blocking XREAD over streams of several slots looks again (seconds).
POLL_EVERY = 0.1


# -- routing (pure) -----------------------------------------------------------------------


def is_keyless(call: Call) -> bool:
    """Whether `call` has no key a cluster pipeline could route it by."""
    return call.route is not None or str(call.args[0]).split()[0].upper() in KEYLESS


def refuse_wait(calls: Sequence[Call]) -> None:
    """WAIT counts the replicas that have the writes of its own connection, and a Cluster
    spreads a batch's writes over a connection per node: sent alone it would confirm
    nothing, so a durable write is refused before anything is stored."""
    if any(str(call.args[0]).upper() == "WAIT" for call in calls):
        raise ConfigurationError(
            "durable=True and min_replicas are not supported on a Redis Cluster yet"
        )


def first_key(call: Call) -> str | None:
    """The first key of a script call or plain keyed command (None for a keyless one)."""
    if is_keyless(call):
        return call.route
    if call.script is not None:
        return str(call.args[3]) if int(call.args[2]) > 0 else None
    return str(call.args[1]) if len(call.args) > 1 else None


def with_sources(calls: Sequence[Call]) -> Steps[Sequence[Call], list[Any]]:
    """The round trips that run `calls`: one, and one more for the script calls a node
    answered with NOSCRIPT, sent as EVAL of the source with the same keys (which caches
    the script on that node for the EVALSHAs that follow)."""
    replies: list[Any] = yield calls
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        again = [evaluated(calls[i]) for i in missing]
        for i, reply in zip(missing, (yield again), strict=True):
            replies[i] = reply
    return replies


def evaluated(call: Call) -> Call:
    """An EVALSHA call as EVAL of its script's source."""
    assert call.script is not None, "only a script call gets NOSCRIPT"
    return Call(("EVAL", call.script.source, *call.args[2:]), call.script)


def xread_streams(call: Call) -> tuple[list[Any], list[Any], list[Any]] | None:
    """An XREAD's options, streams and ids; None for any other command."""
    if str(call.args[0]).upper() != "XREAD":
        return None
    at = [str(a).upper() for a in call.args].index("STREAMS")
    rest = list(call.args[at + 1 :])
    half = len(rest) // 2
    return list(call.args[1:at]), rest[:half], rest[half:]


def xread_per_slot(call: Call, blocking: bool) -> list[Call]:
    """An XREAD over streams of several slots as one XREAD per slot (`blocking`: keep its
    BLOCK option, else drop it)."""
    parsed = xread_streams(call)
    assert parsed is not None
    options, streams, ids = parsed
    if not blocking and "BLOCK" in [str(o).upper() for o in options]:
        at = [str(o).upper() for o in options].index("BLOCK")
        options = options[:at] + options[at + 2 :]
    slots: dict[int, list[int]] = {}
    for i, stream in enumerate(streams):
        slots.setdefault(key_slot(str(stream).encode()), []).append(i)
    return [
        Call.command("XREAD", *options, "STREAMS", *[streams[i] for i in group],
                     *[ids[i] for i in group])
        for group in slots.values()
    ]  # fmt: skip


def joined(replies: list[Any]) -> Any:
    """Per-slot XREAD replies as one (a list of [stream, entries]; None when empty)."""
    found: list[Any] = []
    for reply in replies:
        if isinstance(reply, Exception):
            return reply
        found += list(reply.items()) if isinstance(reply, dict) else reply or []
    return found or None


def cluster_unavailable(exc: BaseException, settings: Settings) -> BrokerUnavailableError:
    """The error producers see when the Cluster, or the node of a slot, cannot answer."""
    nodes = ",".join(f"{host}:{port}" for host, port in startup(settings).nodes)
    return BrokerUnavailableError(f"Redis Cluster at {nodes} is unavailable: {exc}")


def startup(settings: Settings) -> ClusterAddress:
    """The nodes (and credentials) to discover the Cluster from."""
    if settings.redis_url.startswith(CLUSTER_SCHEME + "://"):
        return cluster_nodes(settings.redis_url)
    url = urlsplit(settings.redis_url)
    return ClusterAddress(((url.hostname or "localhost", url.port or 6379),), url.username,
                          url.password)  # fmt: skip


def node_settings(settings: Settings, host: str, port: int) -> Settings:
    """`settings` for a plain connection to one node of the Cluster."""
    address = startup(settings)
    credentials = ""
    if address.username or address.password:
        credentials = f"{quote(address.username or '')}:{quote(address.password or '')}@"
    bracketed = f"[{host}]" if ":" in host else host
    url = f"redis://{credentials}{bracketed}:{port}/0"
    return settings.replace(redis_url=url, redis_cluster=False)


def memory_of(calls: Sequence[Call], replies: list[Any]) -> Call:
    """INFO memory, routed to the node that refused the first write at maxmemory."""
    refused = next(c for c, r in zip(calls, replies, strict=True) if isinstance(r, BrokerFullError))
    return Call(MEMORY.args, route=first_key(refused))


def _check(replies: list[Any], settings: Settings, raise_errors: bool) -> list[Any]:
    """A node that answered CLUSTERDOWN, or could not be reached (the cluster pipeline
    leaves that error in the place of each of its calls), makes the Cluster unavailable,
    as a standalone Redis that cannot be reached is: not a failed command."""
    for reply in replies:
        if isinstance(reply, CLUSTER_UNAVAILABLE):
            raise cluster_unavailable(reply, settings) from reply
    if raise_errors:
        first_error(replies)
    return replies


# -- clients ------------------------------------------------------------------------------


def sync_cluster_client(
    settings: Settings, *, blocking_margin: float = 0.0
) -> redis.cluster.RedisCluster:
    """A thread-safe cluster client with the standalone client's timeouts and retries."""
    address = startup(settings)
    options = _client_options(settings)
    options["socket_timeout"] += blocking_margin
    retry = Retry(_backoff(), CALL_RETRIES, (RedisConnectionError, RedisTimeoutError))
    return redis.cluster.RedisCluster(
        startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in address.nodes],  # type: ignore[no-untyped-call]
        username=address.username, password=address.password, retry=retry, **options,
    )  # fmt: skip


def async_cluster_client(
    settings: Settings, *, name: str = "conveyor"
) -> redis.asyncio.cluster.RedisCluster:
    """An asyncio cluster client with the standalone client's timeouts and retries."""
    address = startup(settings)
    retry = AsyncRetry(_backoff(), CALL_RETRIES, (RedisConnectionError, RedisTimeoutError))
    return redis.asyncio.cluster.RedisCluster(
        startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in address.nodes],
        username=address.username, password=address.password, retry=retry,
        **_client_options(settings, name),
    )  # fmt: skip


# -- the sync side ------------------------------------------------------------------------


class SyncClusterTransport:
    """Blocking side, for producers and tools without an event loop."""

    def __init__(self, settings: Settings, client: redis.cluster.RedisCluster | None = None):
        self.settings = settings
        self.client = client or sync_cluster_client(settings)
        self._reader: redis.cluster.RedisCluster | None = None

    def execute(
        self, calls: Sequence[Call], *, raise_errors: bool = True, blocks: bool = False
    ) -> list[Any]:
        """Send calls as `SyncTransport.execute` does, each to its slot's node."""
        refuse_wait(calls)
        try:
            replies = name_refusals(drive(with_sources(calls), self._reading(blocks)))
            if any(isinstance(reply, BrokerFullError) for reply in replies):
                replies = self._with_memory(calls, replies)
        except CLUSTER_UNAVAILABLE as exc:
            raise cluster_unavailable(exc, self.settings) from exc
        return _check(replies, self.settings, raise_errors)

    def _reading(self, blocks: bool) -> Callable[[Sequence[Call]], list[Any]]:
        def send(calls: Sequence[Call]) -> list[Any]:
            return [self._xread(c, blocks) if xread_streams(c) else r
                    for c, r in zip(calls, self._send(calls), strict=True)]  # fmt: skip

        return send

    def _send(self, calls: Sequence[Call]) -> list[Any]:
        replies: list[Any] = [None] * len(calls)
        keyed = [i for i, c in enumerate(calls) if not is_keyless(c) and not xread_streams(c)]
        if keyed:
            pipe = self.client.pipeline()  # type: ignore[no-untyped-call]
            for i in keyed:
                pipe.execute_command(*calls[i].args)
            for i, reply in zip(keyed, pipe.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        for i, call in enumerate(calls):
            if is_keyless(call):
                replies[i] = self._one(self.client, call)
        return replies

    def _one(self, client: redis.cluster.RedisCluster, call: Call) -> Any:
        node = client.get_node_from_key(call.route) if call.route else client.get_default_node()  # type: ignore[no-untyped-call]
        try:
            return client.execute_command(*call.args, target_nodes=node)  # type: ignore[no-untyped-call]
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

    def close(self) -> None:
        """Close every connection."""
        self.client.close()
        if self._reader is not None:
            self._reader.close()


# -- the asyncio side ---------------------------------------------------------------------


class AsyncClusterTransport:
    """Asyncio side: the cluster client for calls, and plain clients per node for what
    blocks on one key (waits, presence, blocking reads) and for pub/sub.

    `name` is what CLIENT LIST shows for every connection, as in AsyncTransport.
    """

    def __init__(
        self,
        settings: Settings,
        client: redis.asyncio.cluster.RedisCluster | None = None,
        *,
        name: str = "conveyor",
    ) -> None:
        self.settings = settings
        self.name = name
        self.client = client or async_cluster_client(settings, name=name)
        self._nodes: dict[tuple[str, int, str], redis.asyncio.Redis] = {}
        #: the name of this transport's waiting connections, so a cancel can find them
        self._waiter_name = f"{name}:wait:{uuid.uuid4().hex[:12]}"

    async def execute(
        self, calls: Sequence[Call], *, raise_errors: bool = True, blocks: bool = False
    ) -> list[Any]:
        """Send calls as `AsyncTransport.execute` does, each to its slot's node."""
        refuse_wait(calls)

        async def send(batch: Sequence[Call]) -> list[Any]:
            return await self._send(batch, blocks)

        try:
            replies = name_refusals(await drive_async(with_sources(calls), send))
            if any(isinstance(reply, BrokerFullError) for reply in replies):
                with contextlib.suppress(*CLUSTER_UNAVAILABLE):  # the figures are a courtesy
                    replies = with_memory(replies, await self._one(memory_of(calls, replies)))
        except CLUSTER_UNAVAILABLE as exc:
            raise cluster_unavailable(exc, self.settings) from exc
        return _check(replies, self.settings, raise_errors)

    async def _send(self, calls: Sequence[Call], blocks: bool = False) -> list[Any]:
        replies: list[Any] = [None] * len(calls)
        keyed = [i for i, c in enumerate(calls) if not is_keyless(c) and not xread_streams(c)]
        if keyed:
            pipe = self.client.pipeline()
            for i in keyed:
                pipe.execute_command(*calls[i].args)
            for i, reply in zip(keyed, await pipe.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        for i, call in enumerate(calls):
            if is_keyless(call):
                replies[i] = await self._one(call)
            elif xread_streams(call):
                replies[i] = await self._xread(call, blocks)
        return replies

    async def _one(self, call: Call) -> Any:
        await self.client.initialize()
        client = self.client
        node = client.get_node_from_key(call.route) if call.route else client.get_default_node()
        try:
            return await client.execute_command(*call.args, target_nodes=node)
        except ResponseError as exc:
            return exc

    async def _xread(self, call: Call, blocks: bool) -> Any:
        """One XREAD per slot; blocking over several slots looks again every POLL_EVERY s."""
        per_slot = xread_per_slot(call, blocking=True)
        if len(per_slot) == 1:
            return await self._read(per_slot[0], blocks)
        once = xread_per_slot(call, blocking=False)
        options = xread_streams(call)[0]  # type: ignore[index]
        upper = [str(o).upper() for o in options]
        block = int(options[upper.index("BLOCK") + 1]) / 1000 if "BLOCK" in upper else 0.0
        deadline = time.monotonic() + block
        while True:
            found = joined([await self._read(c, False) for c in once])
            if found is not None or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(POLL_EVERY)

    async def _read(self, call: Call, blocks: bool) -> Any:
        try:
            if not blocks:
                return await self.client.execute_command(*call.args)
            stream = xread_streams(call)[1][0]  # type: ignore[index]
            client = await self._node(str(stream), "events", READ_BLOCK_MAX)
            return await client.execute_command(*call.args)  # type: ignore[no-untyped-call]
        except AskError:  # the slot moved: nothing read this time, the map is refreshed
            await self._lost(str(xread_streams(call)[1][0]))  # type: ignore[index]
            return None
        except ResponseError as exc:
            return exc

    async def wait(self, keys: Sequence[str], timeout: float) -> bool:
        """Block until one of the lists `keys` gets an element (popped: True) or `timeout`
        passes (False): one BLPOP per slot, concurrently."""
        slots: dict[int, list[str]] = {}
        for key in keys:
            slots.setdefault(key_slot(key.encode()), []).append(key)
        groups = list(slots.values())
        try:
            if len(groups) == 1:
                client = await self._node(keys[0], "wait", timeout)
                return await client.blpop(groups[0], timeout=timeout) is not None
            return await self._wait_many(groups, timeout)
        except AskError:
            await self._lost(keys[0])
            return False
        except CLUSTER_UNAVAILABLE as exc:
            await self._lost(keys[0])
            raise cluster_unavailable(exc, self.settings) from exc

    async def _wait_many(self, groups: list[list[str]], timeout: float) -> bool:
        waits: list[_Wait] = []
        for group in groups:
            waits.append(_Wait(group, await self._node(group[0], "wait", timeout)))
        tasks = [asyncio.ensure_future(w.pop(timeout)) for w in waits]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await self._settle(waits, tasks, keep=False)
            raise
        return await self._settle(waits, tasks, keep=True)

    async def _settle(
        self, waits: list[_Wait], tasks: Sequence[asyncio.Future[Any]], *, keep: bool
    ) -> bool:
        """Unblock the BLPOPs still blocked, and push back each token popped beyond the
        one kept: a token popped for nothing would leave another worker asleep."""
        for wait, task in zip(waits, tasks, strict=True):
            if not task.done():
                await wait.unblock(self.settings.call_timeout)
        _, late = await asyncio.wait(tasks, timeout=self.settings.call_timeout)
        for task in late:  # its node did not answer the unblock: drop the connection
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        kept = False
        for wait, result in zip(waits, results, strict=True):
            if isinstance(result, AskError):
                await self._lost(wait.keys[0])
            elif isinstance(result, list):
                if keep and not kept:
                    kept = True
                else:
                    await self._give_back(result)
        failed = [r for r in results if isinstance(r, CLUSTER_UNAVAILABLE)]
        if failed and not kept:
            raise failed[0]
        return kept

    async def _give_back(self, popped: list[Any]) -> None:
        key, token = popped
        with contextlib.suppress(BrokerUnavailableError):
            await self.execute(
                [Call.command("LPUSH", key, token), Call.command("LTRIM", key, 0, 0)]
            )

    async def wait_then_execute(
        self, key: str, timeout: float, calls: Sequence[Call]
    ) -> list[Any] | None:
        """As `AsyncTransport.wait_then_execute`, on a connection to the node of `key` (the
        calls share its slot). None when the node lacks a script or the slot moved: the
        caller sends the calls again with `execute`."""
        client = await self._node(key, "wait", timeout)
        pipe = client.pipeline(transaction=False)
        pipe.blpop([key], timeout=timeout)
        for call in calls:
            pipe.execute_command(*call.args)
        try:
            replies = list(await pipe.execute(raise_on_error=False))
        except asyncio.CancelledError:
            await self._drop_waiters(client)
            raise
        except UNAVAILABLE as exc:
            await self._lost(key)
            raise cluster_unavailable(exc, self.settings) from exc
        if any(isinstance(reply, AskError) for reply in replies):
            await self._lost(key)
            return None
        if any(isinstance(reply, NoScriptError) for reply in replies):
            return None
        return _check(name_refusals(replies[1:]), self.settings, True)

    async def _drop_waiters(self, client: redis.asyncio.Redis) -> None:
        """As `AsyncTransport._drop_waiters`, on the node of the cancelled wait."""
        try:
            for found in await client.client_list(_type="normal"):
                if found.get("name") == self._waiter_name:
                    await client.execute_command(
                        "CLIENT", "KILL", "ID", found["id"], "SKIPME", "yes"
                    )  # type: ignore[no-untyped-call]
        except (ResponseError, *UNAVAILABLE):
            pass

    async def hold(self, key: str, timeout: float) -> None:
        """As `AsyncTransport.hold`, on the node of `key` (the `{workers}` slot's, where
        the reaper's CLIENT LIST looks)."""
        try:
            client = await self._node(key, "presence", timeout)
            await client.blpop([key], timeout=timeout)
        except AskError:
            await self._lost(key)
        except CLUSTER_UNAVAILABLE as exc:
            await self._lost(key)
            raise cluster_unavailable(exc, self.settings) from exc

    @contextlib.asynccontextmanager
    async def subscribed(
        self, channels: Sequence[str]
    ) -> AsyncIterator[Callable[[float], Awaitable[bytes | None]]]:
        """As `AsyncTransport.subscribed`, on one node: a PUBLISH on any node of a Cluster
        reaches the subscribers of every node."""
        try:
            await self.client.initialize()
            node = self.client.get_default_node()
        except CLUSTER_UNAVAILABLE as exc:
            raise cluster_unavailable(exc, self.settings) from exc
        settings = node_settings(self.settings, node.host, int(node.port))
        client = async_client(settings, name=f"{self.name}:listen")
        pubsub = client.pubsub(ignore_subscribe_messages=True)

        async def receive(timeout: float) -> bytes | None:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
            return None if message is None else cast(bytes, message["data"])

        try:
            await pubsub.subscribe(*channels)
            yield receive
        except UNAVAILABLE as exc:
            raise cluster_unavailable(exc, self.settings) from exc
        finally:
            with contextlib.suppress(*UNAVAILABLE):
                await pubsub.aclose()
            await client.aclose()

    async def _node(self, key: str, purpose: str, margin: float) -> redis.asyncio.Redis:
        """A plain client of the node serving `key` now, one per node and purpose."""
        await self.client.initialize()
        node = self.client.get_node_from_key(key)
        assert node is not None, "a covered Cluster serves every slot"
        found = (node.host, int(node.port), purpose)
        if found not in self._nodes:
            name = self._waiter_name if purpose == "wait" else f"{self.name}:{purpose}"
            settings = node_settings(self.settings, node.host, int(node.port))
            self._nodes[found] = async_client(settings, blocking_margin=margin, name=name)
        return self._nodes[found]

    async def _lost(self, key: str) -> None:
        """A node of ours failed or gave its slot away: a keyed call through the cluster
        client makes redis-py refresh its slot map, so the next wait finds the new node."""
        with contextlib.suppress(*CLUSTER_UNAVAILABLE, ResponseError):
            await self.client.execute_command("EXISTS", key)

    async def close(self) -> None:
        """Close every connection."""
        await self.client.aclose()
        for client in self._nodes.values():
            await client.aclose()


class _Wait:
    """One BLPOP of a multi-slot wait, on a connection of its own whose id is known, so
    CLIENT UNBLOCK can end it without closing it."""

    def __init__(self, keys: list[str], client: redis.asyncio.Redis) -> None:
        self.keys = keys
        self.client = client
        self.client_id: int | None = None
        self.started = asyncio.Event()

    async def pop(self, timeout: float) -> list[Any] | None:
        """BLPOP: [key, token], or None after `timeout` or an unblock."""
        pool = self.client.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_packed_command(
                [pack_command(("CLIENT", "ID")), pack_command(("BLPOP", *self.keys, timeout))]
            )
            self.client_id = int(await connection.read_response())
            self.started.set()
            return cast(list[Any] | None, await connection.read_response())
        except BaseException:
            await connection.disconnect()  # an unread reply must not reach the next user
            raise
        finally:
            self.started.set()
            await pool.release(connection)

    async def unblock(self, timeout: float) -> None:
        """End the BLPOP if it still blocks: it then returns None, or the token it popped
        just before."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.started.wait(), timeout)
        if self.client_id is not None:
            with contextlib.suppress(ResponseError, *UNAVAILABLE):
                await self.client.execute_command("CLIENT", "UNBLOCK", self.client_id)  # type: ignore[no-untyped-call]


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
