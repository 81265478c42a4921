"""The synchronous broker: executes the same sans-IO operations on redis.Redis."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import redis
from redis.connection import AbstractConnection
from redis.exceptions import ResponseError

from conveyor.broker.connection import (
    UNAVAILABLE,
    first_error,
    missing_scripts,
    pack_command,
    scripts_of,
    sync_client,
    unavailable,
)
from conveyor.broker.ops import Op, Operations
from conveyor.broker.scripts import Arg, Call
from conveyor.settings import Settings

T = TypeVar("T")


class SyncBroker:
    """Blocking twin of AsyncBroker, for producers and tools without an event loop.

    Calls go over a connection this broker holds, packed by hiredis, when no other thread
    is using it: taking a connection from the pool and returning it costs about a fifth of
    a loopback round trip. Concurrent callers use the pool.
    """

    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.ops = Operations(settings)
        self.client = client or sync_client(settings)
        self._lane = threading.Lock()
        self._held: AbstractConnection | None = None
        self._held_pid = 0

    def run(self, op: Op[T]) -> T:
        """Execute `op` and decode its replies."""
        return op.decode(self.execute(op.calls))

    def execute(self, calls: Sequence[Call], *, raise_errors: bool = True) -> list[Any]:
        """Send calls in one pipeline; reload scripts once if Redis forgot them.

        With `raise_errors=False`, an error reply stays in its place in the result.
        """
        try:
            replies = self._send(calls)
            missing = missing_scripts(replies)
            if missing:
                for source in scripts_of([calls[i] for i in missing]):
                    self.client.execute_command("SCRIPT", "LOAD", source)  # type: ignore[no-untyped-call]
                again = self._send([calls[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except UNAVAILABLE as exc:
            raise unavailable(exc, self.settings) from exc
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

    def _send_held(self, calls: Sequence[Call]) -> list[Any]:
        """Calls pipelined over the held connection, retried as the client retries its own;
        replies parsed as the client parses them, an error reply left in its place."""
        connection = self._held
        if connection is None or self._held_pid != os.getpid():  # none yet, or forked
            connection = self._held = cast(
                AbstractConnection, self.client.connection_pool.make_connection()
            )
            self._held_pid = os.getpid()
        packed = [pack_command(call.args) for call in calls]

        def reply(command: Arg) -> Any:
            try:
                return self.client.parse_response(connection, command)  # type: ignore[no-untyped-call]
            except ResponseError as exc:
                return exc

        def round_trip() -> list[Any]:
            connection.send_packed_command(packed)  # type: ignore[no-untyped-call]
            return [reply(call.args[0]) for call in calls]

        return connection.retry.call_with_retry(
            round_trip,
            lambda _: connection.disconnect(),  # type: ignore[no-untyped-call]
        )

    def close(self) -> None:
        """Close the held connection and the connection pool."""
        with self._lane:
            if self._held is not None and self._held_pid == os.getpid():
                self._held.disconnect()  # type: ignore[no-untyped-call]
            self._held = None
        self.client.close()
