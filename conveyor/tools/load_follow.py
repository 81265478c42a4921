"""What `conveyor load --wait` measures once the tasks are sent: each record followed to
its end, then states, completion throughput and latency percentiles read from them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.model import TaskRecord

if TYPE_CHECKING:
    from conveyor.tools.load import Progress

#: Seconds between two reads of the unfinished tasks' records while waiting.
POLL_INTERVAL = 0.2
PERCENTILES = (50, 95, 99)


class Records(Protocol):
    """Reads records by id: the AsyncInspector's `records`."""

    async def records(self, task_ids: Sequence[str]) -> list[TaskRecord | None]:
        """Records in order, None where unknown."""


@dataclass(slots=True)
class Followed:
    """The tasks `follow` saw finish, those it lost (no record) and those still running."""

    finished: list[TaskRecord] = field(default_factory=list)
    missing: int = 0
    unfinished: int = 0


async def follow(
    inspector: Records, ids: list[str], timeout: float, progress: Progress, stop: asyncio.Event
) -> Followed:
    """Read the records of `ids` until each is terminal, `timeout` passes or `stop` is set;
    each pass reads only the tasks not yet finished."""
    seen, remaining = Followed(), ids
    deadline = time.monotonic() + timeout
    progress.phase("finished", len(ids))
    while remaining:
        still = []
        for task_id, record in zip(remaining, await inspector.records(remaining), strict=True):
            if record is None:
                seen.missing += 1  # deleted or expired before it was seen finished
            elif record.state.is_terminal:
                seen.finished.append(record)
            else:
                still.append(task_id)
        progress.advance(len(remaining) - len(still))
        remaining = still
        if not remaining or time.monotonic() >= deadline or stop.is_set():
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_INTERVAL)
    seen.unfinished = len(remaining)
    return seen


def percentiles(values: Sequence[float]) -> dict[str, float] | None:
    """p50, p95 and p99 by nearest rank, in seconds; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    last = len(ordered) - 1
    return {f"p{p}": ordered[min(last, round(p / 100 * last))] for p in PERCENTILES}


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    return None if later is None or earlier is None else (later - earlier).total_seconds()


def completion(seen: Followed) -> dict[str, Any]:
    """Completion figures read from the records: states, throughput from the first enqueue
    to the last finish, wait (start - when it could first run) and end-to-end latency."""
    done = seen.finished
    states = Counter(str(r.state) for r in done)
    first = min((r.enqueued_at for r in done if r.enqueued_at), default=None)
    last = max((r.finished_at for r in done if r.finished_at), default=None)
    span = _seconds(last, first)
    waits = [_seconds(r.started_at, max(r.enqueued_at, r.due_at or r.enqueued_at))
             for r in done if r.enqueued_at]  # fmt: skip
    ends = [_seconds(r.finished_at, r.enqueued_at) for r in done]
    return {
        "finished": len(done),
        "missing": seen.missing,
        "unfinished": seen.unfinished,
        "states": dict(sorted(states.items())),
        "seconds": span,
        "per_second": len(done) / span if span else None,
        "wait_seconds": percentiles([w for w in waits if w is not None]),
        "end_to_end_seconds": percentiles([e for e in ends if e is not None]),
    }
