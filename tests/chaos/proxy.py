"""A loopback TCP proxy that injects network faults between Conveyor and its Redis.

Workers and producers reach the Redis under test through it; the ledger never does. It
runs its own asyncio loop in a daemon thread, and the test thread steers it:

- `normal()`: forward everything at once (and reset the connections a blackhole swallowed);
- `drop_all()`: close every open connection now, as a crashed router would; new
  connections are still accepted;
- `blackhole()`: keep connections open and accept new ones, but forward nothing in
  either direction (what a partition looks like to TCP until its timers give up);
- `latency(seconds)`: deliver every chunk `seconds` after it arrived, in each direction,
  so a round trip costs twice that (`tc netem delay` on both ends of a link);
- `lose_next_reply()`: swallow the next chunk Redis sends to a client: the command ran,
  its caller never hears so (what a connection cut between request and reply does);
- `close()`: stop listening, close everything, end the thread.

A swallowed stream has lost bytes in the middle, so it can never be trusted again: when
a blackhole ends, the connections it swallowed are reset rather than resumed, as TCP
would after its retransmissions ran out.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

#: Largest chunk read from a socket at once.
CHUNK = 65536
#: Longest a control call waits for the proxy's loop to answer.
CONTROL_TIMEOUT = 10.0


@dataclass(slots=True)
class ProxyStats:
    """What the proxy did, for the report."""

    accepted: int = 0
    dropped: int = 0
    swallowed_bytes: int = 0
    forwarded_bytes: int = 0


@dataclass(eq=False, slots=True)
class _Link:
    """One proxied connection: the client's socket and (unless swallowed) Redis's."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    swallowed: bool = False

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class ChaosProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to 127.0.0.1:`target_port`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.stats = ProxyStats()
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._blackhole = False
        self._latency = 0.0
        self._lose_replies = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxy")
        self._thread.daemon = True
        self._thread.start()
        self.port: int = self._call(self._listen())

    @property
    def url(self) -> str:
        """The redis:// URL that reaches Redis through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    # -- control, from the test thread -----------------------------------------------

    def normal(self) -> None:
        """Forward everything without delay; reset the connections a blackhole swallowed."""
        self._call(self._set(blackhole=False, latency=0.0))

    def drop_all(self) -> int:
        """Close every open connection now; returns how many were closed."""
        return self._call(self._drop(swallowed_only=False))

    def blackhole(self) -> None:
        """Forward nothing, in either direction, on old and new connections alike."""
        self._call(self._set(blackhole=True, latency=self._latency))

    def latency(self, seconds: float) -> None:
        """Delay every forwarded chunk by `seconds` (0 for none)."""
        self._call(self._set(blackhole=self._blackhole, latency=max(0.0, seconds)))

    def lose_next_reply(self) -> None:
        """Swallow the next chunk from Redis to any client (keep the connection open)."""
        self._call(self._set_lose_replies(1))

    async def _set_lose_replies(self, count: int) -> None:
        self._lose_replies = count

    def close(self) -> None:
        """Stop listening, close every connection and end the proxy's thread."""
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CONTROL_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> ChaosProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT)

    # -- the proxy's own loop --------------------------------------------------------

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def _set(self, *, blackhole: bool, latency: float) -> None:
        healed = self._blackhole and not blackhole
        self._blackhole, self._latency = blackhole, latency
        if blackhole:
            for link in self._links:
                link.swallowed = True
        elif healed:
            await self._drop(swallowed_only=True)

    async def _drop(self, *, swallowed_only: bool) -> int:
        doomed = [link for link in self._links if link.swallowed or not swallowed_only]
        for link in doomed:
            self._links.discard(link)
            link.abort()
        self.stats.dropped += len(doomed)
        return len(doomed)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._drop(swallowed_only=False)
        for _ in range(2):  # the pumps, then the senders they leave behind
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=CONTROL_TIMEOUT / 4)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        link = _Link(writer, swallowed=self._blackhole)
        self._links.add(link)
        if link.swallowed:  # accepted, but nothing will ever reach Redis
            self._spawn(self._pump(reader, None, link))
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:  # Redis is down: the client sees its connection closed
            self._links.discard(link)
            link.abort()
            return
        link.upstream = up_writer
        if link not in self._links:  # dropped while connecting
            link.abort()
            return
        self._spawn(self._pump(reader, up_writer, link))
        self._spawn(self._pump(up_reader, writer, link))

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter | None, link: _Link
    ) -> None:
        """Copy `source` to `sink` chunk by chunk, each delivered `latency` after it
        arrived: chunks keep their order, and a burst is not delayed once per chunk."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = self._spawn(self._deliver(queue, sink, link))
        try:
            while link in self._links and (data := await source.read(CHUNK)):
                if link.swallowed or sink is None or self._lose(sink is link.client):
                    self.stats.swallowed_bytes += len(data)
                else:
                    queue.put_nowait((time.monotonic() + self._latency, data))
            if link in self._links:  # a clean close: what is in flight still arrives
                await queue.join()
        except OSError:
            pass
        finally:  # one side closed or failed: the whole connection goes
            sender.cancel()
            self._links.discard(link)
            link.abort()

    def _lose(self, is_reply: bool) -> bool:
        """True if this chunk, a reply when `is_reply`, is the one to lose."""
        if is_reply and self._lose_replies > 0:
            self._lose_replies -= 1
            return True
        return False

    async def _deliver(
        self,
        queue: asyncio.Queue[tuple[float, bytes]],
        sink: asyncio.StreamWriter | None,
        link: _Link,
    ) -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if sink is None or link.swallowed or link not in self._links:
                self.stats.swallowed_bytes += len(data)
                queue.task_done()
                continue
            try:
                sink.write(data)
                await sink.drain()
            except OSError:
                self._links.discard(link)
                link.abort()
            self.stats.forwarded_bytes += len(data)
            queue.task_done()
