"""The asyncio broker: executes the sans-IO operations over the async transport."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from conveyor.broker.cluster import AnyAsyncTransport, async_transport
from conveyor.broker.coalescer import Coalescer
from conveyor.broker.ops import Op, Operations
from conveyor.broker.scripts import Call
from conveyor.settings import Settings

T = TypeVar("T")


class AsyncBroker:
    """Runs operations in one round trip each; Redis errors surface as BrokerUnavailableError."""

    def __init__(self, settings: Settings, transport: AnyAsyncTransport | None = None) -> None:
        self.settings = settings
        self.ops = Operations(settings)
        self.transport = transport or async_transport(settings)
        #: producers' operations go through it, to share round trips when they are many
        self.shared = Coalescer(self.transport, self.ops)

    async def run(self, op: Op[T]) -> T:
        """Execute `op` in a round trip of its own and decode its replies."""
        replies = await self.transport.execute(
            op.calls, raise_errors=not op.reads_errors, blocks=op.blocks
        )
        return op.decode(replies)

    async def execute(self, calls: Sequence[Call], *, raise_errors: bool = True) -> list[Any]:
        """Send calls in one pipeline; see `AsyncTransport.execute`."""
        return await self.transport.execute(calls, raise_errors=raise_errors)

    async def wait_for_work(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until a task arrives in one of `queues` (True) or `timeout` passes (False)."""
        keys = [self.ops.queue_keys(q).signal for q in queues]
        return await self.transport.wait(keys, timeout)

    async def wait_then_run(self, queue: str, timeout: float, op: Op[T]) -> T | None:
        """Block until a task arrives in `queue` or `timeout` passes, then execute `op`.

        `op` rides behind the wait, so a woken worker claims without another round trip.
        None when Redis lost its script cache: the caller runs `op` again with `run`.
        """
        signal = self.ops.queue_keys(queue).signal
        replies = await self.transport.wait_then_execute(signal, timeout, op.calls)
        return None if replies is None else op.decode(replies)

    async def hold_presence(self, worker_id: str, timeout: float) -> None:
        """Keep `worker_id`'s presence connection open in Redis for up to `timeout` s."""
        await self.transport.hold(self.ops.presence(worker_id), timeout)

    def subscribed(
        self, channels: Sequence[str]
    ) -> contextlib.AbstractAsyncContextManager[Callable[[float], Awaitable[bytes | None]]]:
        """Listen to pub/sub `channels` (see AsyncTransport.subscribed)."""
        return self.transport.subscribed(channels)

    async def close(self) -> None:
        """Close the transport's connections."""
        await self.transport.close()
