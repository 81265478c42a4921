"""The transport: the only code that sends to Redis, with a sync and an async side.

Its clients come from `connection` (one server or a Sentinel group's master, TLS or not,
with their packing and retry policy); pipelines, script loading (and reloading after
Redis lost its script cache), the blocking wait, and the mapping of connection errors to
BrokerUnavailableError (and of Redis' refusals at maxmemory to BrokerFullError, left in
their place in the replies) all live here. Above it, the operations only build `Call`s and
decode replies; a Redis Cluster transport would be one more implementation of the same
two classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import redis
import redis.asyncio
from redis.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    InvalidResponse,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from conveyor.broker.connection import (
    CALL_RETRIES,
    async_client,
    error_text,
    pack_command,
    server_address,
    sync_client,
)
from conveyor.broker.scripts import Arg, Call
from conveyor.broker.steps import Steps, drive, drive_async
from conveyor.errors import BrokerFullError, BrokerUnavailableError
from conveyor.redis_url import parse_redis_url
from conveyor.settings import Settings

__all__ = ["CALL_RETRIES", "AsyncTransport", "SyncTransport", "async_client", "sync_client"]

#: Errors that mean Redis is unreachable or stalled, as opposed to a bad command.
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
#: An error reply of Redis (a refused command, a script error), raised by `first_error`.
ReplyError = ResponseError
#: Bytes of packed calls the sync transport gathers before it sends them: a larger call (a
#: chunk of a bulk enqueue) goes out at once, and Redis runs it while the next is built.
SEND_AHEAD = 64 * 1024
#: Longest a blocking read (XREAD BLOCK) may wait: its connections' socket timeout allows
#: this much more than a call's. A caller waiting longer reads again.
READ_BLOCK_MAX = 10.0


class SyncTransport:
    """Blocking side, for producers and tools without an event loop.

    Calls go over a connection this transport holds, packed by hiredis, when no other
    thread is using it: taking a connection from the pool and returning it costs about a
    fifth of a loopback round trip. Concurrent callers use the pool.
    """

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.client = client or sync_client(settings)
        self._lane = threading.Lock()
        self._held: AbstractConnection | None = None
        self._held_pid = 0
        self._reader: redis.Redis | None = None

    def execute(
        self, calls: Sequence[Call], *, raise_errors: bool = True, blocks: bool = False
    ) -> list[Any]:
        """Send calls in one pipeline (one more if Redis forgot a script); with
        `raise_errors=False`, an error reply stays in its place in the result; `blocks`:
        over the blocking readers' connections (see READ_BLOCK_MAX)."""
        send = self._send_blocking if blocks else self._send
        try:
            replies = name_refusals(drive(with_scripts(calls), send))
        except UNAVAILABLE as exc:
            raise unavailable(exc, self.settings) from exc
        if any(isinstance(reply, BrokerFullError) for reply in replies):
            with contextlib.suppress(*UNAVAILABLE):  # the figures are a courtesy
                replies = with_memory(replies, self._send([MEMORY])[0])
        if raise_errors:
            first_error(replies)
        return replies

    def _send(self, calls: Sequence[Call]) -> list[Any]:
        if self._lane.acquire(blocking=False):
            try:
                return self._send_held(calls)
            finally:
                self._lane.release()
        if len(calls) == 1:  # another thread has the held connection: take one from the pool
            try:
                return [self.client.execute_command(*calls[0].args)]  # type: ignore[no-untyped-call]
            except ResponseError as exc:  # NOSCRIPT or a script error: in place, as a pipeline
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call.args)  # type: ignore[no-untyped-call]
        return list(pipe.execute(raise_on_error=False))

    def _send_blocking(self, calls: Sequence[Call]) -> list[Any]:
        if self._reader is None:
            self._reader = sync_client(self.settings, blocking_margin=READ_BLOCK_MAX)
        pipe = self._reader.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call.args)  # type: ignore[no-untyped-call]
        return list(pipe.execute(raise_on_error=False))

    def _send_held(self, calls: Sequence[Call]) -> list[Any]:
        """Calls pipelined over the held connection, retried as the client retries its own;
        replies parsed as the client parses them, an error reply left in its place. The
        calls go out every SEND_AHEAD bytes, as they are packed, not all at the end."""
        connection = self._held
        if connection is None or self._held_pid != os.getpid():  # none yet, or forked
            connection = self._held = cast(
                AbstractConnection, self.client.connection_pool.make_connection()
            )
            self._held_pid = os.getpid()

        def reply(command: Arg) -> Any:
            try:
                return self.client.parse_response(connection, command)  # type: ignore[no-untyped-call]
            except ResponseError as exc:
                return exc

        def round_trip() -> list[Any]:
            # connect() first, as the pool does for its own: a Sentinel-managed connection
            # asks the sentinels for the master there (sending alone would reconnect to
            # the address it had, or to redis-py's default, localhost:6379)
            connection.connect()  # type: ignore[no-untyped-call]
            try:
                packed: list[bytes] = []
                size = 0
                for call in calls:
                    packed.append(pack_command(call.args))
                    size += len(packed[-1])
                    if size >= SEND_AHEAD:
                        connection.send_packed_command(packed)  # type: ignore[no-untyped-call]
                        packed, size = [], 0
                if packed:
                    connection.send_packed_command(packed)  # type: ignore[no-untyped-call]
                return [reply(call.args[0]) for call in calls]
            except BaseException:  # replies may be left unread: the next call must not get them
                connection.disconnect()  # type: ignore[no-untyped-call]
                raise

        return connection.retry.call_with_retry(
            round_trip,
            lambda _: connection.disconnect(),  # type: ignore[no-untyped-call]
        )

    def queue_only(self, commands: Sequence[Sequence[Arg]]) -> list[str]:
        """Queue `commands` inside MULTI and DISCARD them, so none runs; what Redis answered
        to each: 'QUEUED', or its error ('NOPERM ...' for what the ACL refuses). Raises
        ReplyError if MULTI itself is refused (then nothing more is sent). Over a
        connection of its own, closed after, so no state of the probe can linger."""
        connection = cast(AbstractConnection, self.client.connection_pool.make_connection())
        try:
            connection.connect()  # type: ignore[no-untyped-call]
            connection.send_packed_command([pack_command(["MULTI"])])  # type: ignore[no-untyped-call]
            connection.read_response()  # raises if refused
            packed = [pack_command(args) for args in [*commands, ["DISCARD"]]]
            connection.send_packed_command(packed)  # type: ignore[no-untyped-call]
            return [_reply_text(connection) for _ in packed][:-1]
        except UNAVAILABLE as exc:
            raise unavailable(exc, self.settings) from exc
        finally:
            connection.disconnect()  # type: ignore[no-untyped-call]

    def server_address(self) -> str:
        """Where calls go now: the URL's server, or the master the sentinels name."""
        try:
            return server_address(self.client, self.settings)
        except UNAVAILABLE as exc:
            raise unavailable(exc, self.settings) from exc

    def close(self) -> None:
        """Close the held connection and the connection pool."""
        with self._lane:
            if self._held is not None and self._held_pid == os.getpid():
                self._held.disconnect()  # type: ignore[no-untyped-call]
            self._held = None
        self.client.close()
        if self._reader is not None:
            self._reader.close()


class AsyncTransport:
    """Asyncio side: one connection pool for calls, one for blocking waits (their socket
    timeout is widened by the wait), and, for a worker, one presence connection.

    `name` is what CLIENT LIST shows for every connection of this transport: a worker's
    carry its id, so the reaper can see which workers still have a connection.
    """

    def __init__(
        self,
        settings: Settings,
        client: redis.asyncio.Redis | None = None,
        *,
        name: str = "conveyor",
    ) -> None:
        self.settings = settings
        self.name = name
        self.client = client or async_client(settings, name=name)
        self._blocking: redis.asyncio.Redis | None = None
        self._presence: redis.asyncio.Redis | None = None
        self._reader: redis.asyncio.Redis | None = None
        #: the name of this transport's waiting connections, so a cancel can find them
        self._waiter_name = f"{name}:wait:{uuid.uuid4().hex[:12]}"

    async def execute(
        self, calls: Sequence[Call], *, raise_errors: bool = True, blocks: bool = False
    ) -> list[Any]:
        """Send calls in one pipeline (one more if Redis forgot a script); with
        `raise_errors=False`, an error reply stays in its place in the result; `blocks`:
        over the blocking readers' connections (see READ_BLOCK_MAX)."""
        send = self._send_blocking if blocks else self._send
        try:
            replies = name_refusals(await drive_async(with_scripts(calls), send))
        except UNAVAILABLE as exc:
            raise unavailable(exc, self.settings) from exc
        if any(isinstance(reply, BrokerFullError) for reply in replies):
            with contextlib.suppress(*UNAVAILABLE):  # the figures are a courtesy
                replies = with_memory(replies, (await self._send([MEMORY]))[0])
        if raise_errors:
            first_error(replies)
        return replies

    async def _send(self, calls: Sequence[Call]) -> list[Any]:
        if len(calls) == 1:
            try:
                return [await self.client.execute_command(*calls[0].args)]  # type: ignore[no-untyped-call]
            except ResponseError as exc:  # NOSCRIPT or a script error: in place, as a pipeline
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call.args)
        return list(await pipe.execute(raise_on_error=False))

    async def _send_blocking(self, calls: Sequence[Call]) -> list[Any]:
        if self._reader is None:
            self._reader = async_client(
                self.settings, blocking_margin=READ_BLOCK_MAX, name=f"{self.name}:events"
            )
        pipe = self._reader.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call.args)
        return list(await pipe.execute(raise_on_error=False))

    async def wait(self, keys: Sequence[str], timeout: float) -> bool:
        """Block until one of the lists `keys` gets an element (popped: True) or `timeout`
        passes (False)."""
        try:
            return await self._blocking_client(timeout).blpop(keys, timeout=timeout) is not None
        except UNAVAILABLE as exc:
            raise unavailable(exc, self.settings) from exc

    async def wait_then_execute(
        self, key: str, timeout: float, calls: Sequence[Call]
    ) -> list[Any] | None:
        """Block on the list `key` as `wait` does, with `calls` pipelined behind the wait:
        Redis holds them in the connection's buffer and runs them the moment the wait ends.
        None when Redis lost its script cache: the caller sends them again with `execute`."""
        pipe = self._blocking_client(timeout).pipeline(transaction=False)
        pipe.blpop([key], timeout=timeout)
        for call in calls:
            pipe.execute_command(*call.args)
        try:
            replies = list(await pipe.execute(raise_on_error=False))[1:]
        except asyncio.CancelledError:
            await self._drop_waiters()
            raise
        except UNAVAILABLE as exc:
            raise unavailable(exc, self.settings) from exc
        if any(isinstance(reply, NoScriptError) for reply in replies):
            return None
        first_error(name_refusals(replies))
        return replies

    async def _drop_waiters(self) -> None:
        """Make Redis forget a cancelled wait before the caller goes on.

        Closing our end of the socket is not enough: until Redis reads the close, the wait
        is still blocked there with the calls behind it, and a wake-up token pushed
        meanwhile (a shutdown giving its tasks back to pending) would run them, claiming
        tasks for a worker that is stopping. CLIENT KILL answers once Redis freed the
        connection. Best effort: where CLIENT is forbidden (an ACL), or Redis is
        gone, the closed socket is all there is.
        """
        try:
            for client in await self.client.client_list(_type="normal"):
                if client.get("name") == self._waiter_name:
                    await self.client.execute_command("CLIENT", "KILL", "ID", client["id"])  # type: ignore[no-untyped-call]
        except (ResponseError, *UNAVAILABLE):
            pass

    async def hold(self, key: str, timeout: float) -> None:
        """Keep one connection open in Redis for `timeout` seconds: blocked on the list
        `key`, which nobody pushes to, it costs nothing while open, and when Redis or a
        proxy drops it the wait fails at once, so the caller reconnects at once."""
        if self._presence is None:
            self._presence = async_client(
                self.settings, blocking_margin=timeout, name=f"{self.name}:presence"
            )
        try:
            await self._presence.blpop([key], timeout=timeout)
        except UNAVAILABLE as exc:
            raise unavailable(exc, self.settings) from exc

    @contextlib.asynccontextmanager
    async def subscribed(
        self, channels: Sequence[str]
    ) -> AsyncIterator[Callable[[float], Awaitable[bytes | None]]]:
        """A pub/sub connection listening to `channels`; yields `receive(timeout)`: the
        next message's data, or None after `timeout` seconds without one."""
        client = async_client(self.settings, name=f"{self.name}:listen")
        async with listening(client, channels, lambda e: unavailable(e, self.settings)) as receive:
            yield receive

    def _blocking_client(self, timeout: float) -> redis.asyncio.Redis:
        if self._blocking is None:
            self._blocking = async_client(
                self.settings, blocking_margin=timeout, name=self._waiter_name
            )
        return self._blocking

    async def close(self) -> None:
        """Close every connection pool."""
        await self.client.aclose()
        for extra in (self._blocking, self._presence, self._reader):
            if extra is not None:
                await extra.aclose()


def _reply_text(connection: AbstractConnection) -> str:
    """The next reply on `connection` as text; an error reply as its text, NOPERM named."""
    try:
        reply = connection.read_response()
    except NoPermissionError as exc:
        return f"NOPERM {exc}"
    except ResponseError as exc:
        return str(exc)
    return reply.decode() if isinstance(reply, bytes) else str(reply)


@contextlib.asynccontextmanager
async def listening(
    client: redis.asyncio.Redis,
    channels: Sequence[str],
    unavailable_error: Callable[[BaseException], BrokerUnavailableError],
) -> AsyncIterator[Callable[[float], Awaitable[bytes | None]]]:
    """`client` subscribed to `channels` (then closed); yields `receive(timeout)`: the next
    message's data, or None after `timeout` seconds without one."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)

    async def receive(timeout: float) -> bytes | None:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
        return None if message is None else cast(bytes, message["data"])

    try:
        await pubsub.subscribe(*channels)
        yield receive
    except UNAVAILABLE as exc:
        raise unavailable_error(exc) from exc
    finally:
        with contextlib.suppress(*UNAVAILABLE):
            await pubsub.aclose()
        await client.aclose()


def with_scripts(calls: Sequence[Call]) -> Steps[Sequence[Call], list[Any]]:
    """The round trips that run `calls`: one, plus one more if Redis lost its script cache
    (a restart or SCRIPT FLUSH): the missing scripts are loaded and the calls that needed
    them sent again, in the same pipeline."""
    replies: list[Any] = yield calls
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        again = [calls[i] for i in missing]
        sources = {c.script.sha: c.script.source for c in again if c.script}.values()
        loads = [Call.command("SCRIPT", "LOAD", source) for source in sources]
        answers: list[Any] = yield [*loads, *again]
        first_error(answers[: len(loads)])
        for i, reply in zip(missing, answers[len(loads) :], strict=True):
            replies[i] = reply
    return replies


def first_error(replies: list[Any]) -> None:
    """Raise the first error reply of a pipeline, if any."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply


#: How Redis words a write refused at maxmemory, in a plain command's reply and in a
#: script's (Redis 6.2 wraps it in a script error, 7 sends it as it is).
_OOM_TEXT = "command not allowed when used memory > 'maxmemory'"


def is_full(reply: object) -> bool:
    """Whether a reply is Redis refusing a write at maxmemory.

    Redis checks memory at a script's first write, and only if the script has not written
    yet (6.2 and 7 alike): a refused script stored nothing, and once a script wrote, the
    rest of its writes go through.
    """
    return isinstance(reply, OutOfMemoryError) or (
        isinstance(reply, ResponseError) and _OOM_TEXT in str(reply)
    )


def name_refusals(replies: list[Any]) -> list[Any]:
    """`replies` with each refusal at maxmemory replaced by a BrokerFullError in its place."""
    for i, reply in enumerate(replies):
        if isinstance(reply, ResponseError) and is_full(reply):
            refused = BrokerFullError()
            refused.__cause__ = reply
            replies[i] = refused
    return replies


#: The call that reads Redis' memory figures after a refusal.
MEMORY = Call.command("INFO", "memory")


def with_memory(replies: list[Any], info: Any) -> list[Any]:
    """`replies` with each BrokerFullError carrying Redis' memory figures in `info` (an
    INFO memory reply read just after; left as they are if it is not one)."""
    if not isinstance(info, dict) or not info.get("maxmemory"):
        return replies
    memory = (
        int(info.get("used_memory", 0)),
        int(info["maxmemory"]),
        str(info.get("maxmemory_policy", "?")),
    )
    for i, reply in enumerate(replies):
        if isinstance(reply, BrokerFullError):
            replies[i] = BrokerFullError(reply.stored, memory=memory)
            replies[i].__cause__ = reply.__cause__
    return replies


def not_redis(exc: BaseException) -> bool:
    """The server answered what no Redis sends (an HTTP server's page, say): a wrong URL."""
    return isinstance(exc, InvalidResponse)


def unavailable(exc: BaseException, settings: Settings) -> BrokerUnavailableError:
    """The error producers see when Redis is down or stalled."""
    target = parse_redis_url(settings.redis_url).describe()
    return BrokerUnavailableError(f"Redis at {target} is unavailable: {error_text(exc)}")
