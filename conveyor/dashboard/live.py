"""The live view: one overview snapshot a second, computed once however many pages
listen, streamed as server-sent events; and the chart history with its cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from conveyor import serializers
from conveyor.broker.browse import PointCache
from conveyor.broker.inspect import AsyncInspector
from conveyor.dashboard.views import queue_row, worker_row
from conveyor.errors import ConveyorError
from conveyor.ids import queue_of

#: Seconds between two snapshots: the page is never more than this (plus a round trip)
#: behind Redis.
PERIOD = 1.0
#: Seconds a task page's stream of changes lasts before the browser opens another.
TASK_STREAM_SECONDS = 300.0


class Live:
    """Reads what every page shows live, through the Inspector."""

    def __init__(self, inspector: AsyncInspector, lost_after: float) -> None:
        self.inspector = inspector
        self.lost_after = lost_after
        self.cache: PointCache = {}
        self._lock = asyncio.Lock()
        self._last: tuple[float, bytes] = (0.0, b"")

    async def overview(self) -> dict[str, Any]:
        """Every queue's depths, paused or not, lag; and workers alive and lost."""
        stats, workers = await asyncio.gather(
            self.inspector.queue_stats(), self.inspector.workers()
        )
        now = time.time()
        rows = [worker_row(info, now, self.lost_after) for info in workers]
        lost = sum(1 for row in rows if row["lost"])
        return {
            "now": int(now * 1000),
            "queues": [queue_row(s) for s in stats],
            "workers": {"alive": len(rows) - lost, "lost": lost},
        }

    async def history(self, window: str, queue: str | None = None) -> dict[str, Any]:
        """A chart's points; settled buckets come from the cache (see browse.history)."""
        step, points = await self.inspector.history(window, queue, self.cache)
        return {"window": window, "step_seconds": step, "points": [p.to_json() for p in points]}

    async def snapshot(self) -> bytes:
        """The latest snapshot event, computed at most once a PERIOD for all listeners."""
        async with self._lock:
            taken, event = self._last
            if time.monotonic() - taken < PERIOD * 0.9:
                return event
            try:
                data: dict[str, Any] = {
                    "redis": "up",
                    "overview": await self.overview(),
                    "history": await self.history("15m"),
                }
            except ConveyorError as exc:
                data = {"redis": "down", "error": str(exc)}
            event = b"event: snapshot\ndata: " + serializers.dumps(data) + b"\n\n"
            self._last = (time.monotonic(), event)
            return event

    async def task_changes(self, task_id: str, disconnected: Any) -> AsyncIterator[bytes]:
        """One `change` event per state change of the task (read from its queue's event
        stream) until it ends, the page goes away or TASK_STREAM_SECONDS pass (the browser
        then opens a new stream): the task page reloads on each, not on a timer."""
        queue = [queue_of(task_id)]
        cursor = await self.inspector.latest_event(queue)
        yield b"retry: 2000\n\n"
        try:
            async for page in self.inspector.follow(queue, cursor, TASK_STREAM_SECONDS):
                if await disconnected():
                    return
                if not page:
                    yield b": keep-alive\n\n"
                mine = [event for event in page if event.task_id == task_id]
                for event in mine:
                    data = serializers.dumps(event.as_dict())
                    yield b"event: change\nid: " + event.id.encode() + b"\ndata: " + data + b"\n\n"
                if any(event.final for event in mine):
                    return  # the browser opens a new stream in 2 s: a replay is seen too
        except ConveyorError:  # Redis away: the browser reconnects, the page polls slowly
            return

    async def stream(self, disconnected: Any) -> AsyncIterator[bytes]:
        """Snapshots every PERIOD until the page goes away (`disconnected()` is true)."""
        yield b"retry: 2000\n\n"  # a browser that lost the stream reconnects after 2 s
        while not await disconnected():
            started = time.monotonic()
            yield await self.snapshot()
            await asyncio.sleep(max(0.0, PERIOD - (time.monotonic() - started)))
