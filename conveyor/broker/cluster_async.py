"""The asyncio side of the Redis Cluster transport (see `cluster.py` for the routing)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot
from redis.exceptions import AskError, NoScriptError, ResponseError

from conveyor.broker.cluster_routing import (
    CLUSTER_UNAVAILABLE,
    MIGRATION_PAUSE,
    MIGRATION_WAIT,
    POLL_EVERY,
    as_one_node,
    async_cluster_client,
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
    target,
    unsettled,
    with_sources,
    xread_per_slot,
    xread_streams,
)
from conveyor.broker.connection import async_client, pack_command
from conveyor.broker.scripts import Call
from conveyor.broker.steps import drive_async
from conveyor.broker.transport import (
    READ_BLOCK_MAX,
    UNAVAILABLE,
    listening,
    name_refusals,
    with_memory,
)
from conveyor.errors import BrokerFullError, BrokerUnavailableError
from conveyor.settings import Settings

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

        async def send(batch: Sequence[Call]) -> list[Any]:
            return await self._settled(batch, blocks)

        try:
            replies = name_refusals(await drive_async(with_sources(calls), send))
            if any(isinstance(reply, BrokerFullError) for reply in replies):
                with contextlib.suppress(*CLUSTER_UNAVAILABLE):  # the figures are a courtesy
                    replies = with_memory(replies, await self._one(memory_of(calls, replies)))
        except CLUSTER_UNAVAILABLE as exc:
            raise cluster_unavailable(exc, self.settings) from exc
        return check_replies(replies, self.settings, raise_errors)

    async def _settled(self, calls: Sequence[Call], blocks: bool) -> list[Any]:
        """`_send(calls)`, sending again those whose slot is migrating (see `unsettled`),
        with a growing pause, until they run or MIGRATION_WAIT passes."""
        replies = await self._send(calls, blocks)
        deadline, pause = time.monotonic() + MIGRATION_WAIT, MIGRATION_PAUSE
        while (again := resent(calls, replies)) and time.monotonic() < deadline:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
            sent = await self._send([calls[i] for i in again], blocks)
            for i, reply in zip(again, sent, strict=True):
                replies[i] = fewest(replies[i], reply) if is_wait(calls[i]) else reply
        return replies

    async def _send(self, calls: Sequence[Call], blocks: bool = False) -> list[Any]:
        replies: list[Any] = [None] * len(calls)
        if any(is_wait(call) for call in calls):
            await self.client.initialize()  # the slot map names each WAIT's masters
        entries = pipelined(calls, self.client.get_node_from_key)
        if entries:
            pipe = self.client.pipeline()
            for _, call, node in entries:
                pipe.execute_command(*call.args, **({"target_nodes": node} if node else {}))
            for i, reply in folded(entries, await pipe.execute(raise_on_error=False)).items():
                replies[i] = reply
        for i, call in enumerate(calls):
            if is_keyless(call) and not is_wait(call):
                replies[i] = await self._one(call)
            elif xread_streams(call):
                replies[i] = await self._xread(call, blocks)
        return replies

    async def _one(self, call: Call) -> Any:
        await self.client.initialize()
        node = target(self.client, call)
        if node is None:
            return ResponseError(f"no master {call.node} in the Cluster")
        try:
            return as_one_node(await self.client.execute_command(*call.args, target_nodes=node))
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
        if unsettled(replies):  # the slot is migrating: `execute` sends them again
            return None
        if any(isinstance(reply, NoScriptError) for reply in replies):
            return None
        return check_replies(name_refusals(replies[1:]), self.settings, True)

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
        failed = functools.partial(cluster_unavailable, settings=self.settings)
        async with listening(client, channels, failed) as receive:
            yield receive

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
