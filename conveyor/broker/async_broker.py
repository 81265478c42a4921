"""The asyncio broker: executes sans-IO operations on redis.asyncio."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import redis.asyncio
from redis.exceptions import ResponseError

from conveyor.broker.coalescer import Coalescer
from conveyor.broker.connection import (
    UNAVAILABLE,
    async_client,
    first_error,
    missing_scripts,
    scripts_of,
    unavailable,
)
from conveyor.broker.ops import Op, Operations
from conveyor.broker.scripts import Call
from conveyor.settings import Settings

T = TypeVar("T")


class AsyncBroker:
    """Runs operations in one round trip each; maps connection errors to BrokerUnavailableError."""

    def __init__(self, settings: Settings, client: redis.asyncio.Redis | None = None) -> None:
        self.settings = settings
        self.ops = Operations(settings)
        self.client = client or async_client(settings)
        self._blocking: redis.asyncio.Redis | None = None
        #: producers' operations go through it, to share round trips when they are many
        self.shared = Coalescer(self)

    async def run(self, op: Op[T]) -> T:
        """Execute `op` in a round trip of its own and decode its replies."""
        return op.decode(await self.execute(op.calls))

    async def execute(self, calls: Sequence[Call], *, raise_errors: bool = True) -> list[Any]:
        """Send calls in one pipeline; reload scripts once if Redis forgot them.

        With `raise_errors=False`, an error reply stays in its place in the result.
        """
        try:
            replies = await self._send(calls)
            missing = missing_scripts(replies)
            if missing:
                for source in scripts_of([calls[i] for i in missing]):
                    await self.client.execute_command("SCRIPT", "LOAD", source)  # type: ignore[no-untyped-call]
                again = await self._send([calls[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except UNAVAILABLE as exc:
            raise unavailable(exc, self.settings) from exc
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

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until a task arrives in one of `queues` (True) or `timeout` passes (False)."""
        keys = [self.ops.queue_keys(q).signal for q in queues]
        try:
            return await self._blocking_client(timeout).blpop(keys, timeout=timeout) is not None
        except UNAVAILABLE as exc:
            raise unavailable(exc, self.settings) from exc

    async def wait_then_run(self, queue: str, timeout: float, op: Op[T]) -> T | None:
        """Block until a task arrives in `queue` or `timeout` passes, then execute `op`.

        `op` is pipelined behind the BLPOP: Redis holds it in the connection's buffer and
        runs it the moment the wait ends, so a woken worker claims without another round
        trip. None when Redis lost its script cache: the caller runs `op` again with `run`.
        """
        pipe = self._blocking_client(timeout).pipeline(transaction=False)
        pipe.blpop([self.ops.queue_keys(queue).signal], timeout=timeout)
        for call in op.calls:
            pipe.execute_command(*call.args)
        try:
            replies = list(await pipe.execute(raise_on_error=False))[1:]
        except UNAVAILABLE as exc:
            raise unavailable(exc, self.settings) from exc
        if missing_scripts(replies):
            return None
        first_error(replies)
        return op.decode(replies)

    def _blocking_client(self, timeout: float) -> redis.asyncio.Redis:
        if self._blocking is None:
            self._blocking = async_client(self.settings, blocking_margin=timeout)
        return self._blocking

    async def close(self) -> None:
        """Close both connection pools."""
        await self.client.aclose()
        if self._blocking is not None:
            await self._blocking.aclose()
