"""The synchronous broker: executes the same sans-IO operations over the sync transport."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from conveyor.broker.cluster import AnySyncTransport, sync_transport
from conveyor.broker.ops import Op, Operations
from conveyor.broker.scripts import Call
from conveyor.settings import Settings

T = TypeVar("T")


class SyncBroker:
    """Blocking twin of AsyncBroker, for producers and tools without an event loop."""

    def __init__(self, settings: Settings, transport: AnySyncTransport | None = None) -> None:
        self.settings = settings
        self.ops = Operations(settings)
        self.transport = transport or sync_transport(settings)

    def run(self, op: Op[T]) -> T:
        """Execute `op` and decode its replies."""
        replies = self.transport.execute(
            op.calls, raise_errors=not op.reads_errors, blocks=op.blocks
        )
        return op.decode(replies)

    def execute(self, calls: Sequence[Call], *, raise_errors: bool = True) -> list[Any]:
        """Send calls in one pipeline; see `SyncTransport.execute`."""
        return self.transport.execute(calls, raise_errors=raise_errors)

    def close(self) -> None:
        """Close the transport's connections."""
        self.transport.close()
