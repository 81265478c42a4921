"""What an operator browses: a queue's tasks by state, page by page, and the history of
outcomes and latencies behind the charts. Written once for the Inspector's two faces."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from conveyor.broker.admin import Procedure, command
from conveyor.broker.dead_letters import decode_or_placeholder
from conveyor.broker.ops import Op, Operations
from conveyor.broker.scripts import Call
from conveyor.broker.timeseries import WRITE_LAG, Point, buckets, fields_of, point
from conveyor.model import TaskRecord

#: The states whose tasks are indexed, so they can be listed: each is a ZSET of the queue.
LISTED_STATES = ("pending", "active", "scheduled", "retrying", "dead")
#: Seconds after its end by which every worker has written to a bucket (they write about
#: once a second; an outage delays it more, and such a bucket is then read stale).
SETTLED_AFTER = 15
#: A chart cache: (step, bucket start, queue or "") -> its point.
PointCache = MutableMapping[tuple[int, int, str], Point]


def tasks(
    ops: Operations, queue: str, state: str, *, newest_first: bool, offset: int, limit: int
) -> Procedure[tuple[int, list[TaskRecord]]]:
    """(total, page) of the tasks of `queue` in `state`, in the order of their index: claim
    order for pending, lease deadline for active, due time when waiting, death when dead."""
    if state not in LISTED_STATES:
        raise ValueError(f"tasks in state {state!r} are not indexed: use one of {LISTED_STATES}")
    index = getattr(ops.queue_keys(queue), state)
    read = "ZREVRANGE" if newest_first else "ZRANGE"
    total, ids = yield Op(
        [Call.command("ZCARD", index), Call.command(read, index, offset, offset + limit - 1)],
        lambda replies: (int(replies[0]), [i.decode() for i in replies[1]]),
    )
    k = ops.queue_keys(queue)
    raws = yield Op([Call.command("HGETALL", k.task(i)) for i in ids], lambda replies: replies)
    return total, [decode_or_placeholder(i, queue, raw) for i, raw in zip(ids, raws, strict=True)]


def history(
    ops: Operations, window: str, queue: str | None, cache: PointCache | None = None
) -> Procedure[tuple[int, list[Point]]]:
    """(step seconds, points oldest first) of `window` ("15m", "1h", "24h") for one queue or
    all. Settled buckets found in `cache` are not read again; those read are added to it."""
    seconds, micros = yield command("TIME")
    now = int(seconds) + int(micros) / 1e6
    resolution, starts = buckets(window, now)
    step, tag = resolution.step, queue or ""
    known = cache if cache is not None else {}
    missing = [b for b in starts if (step, b, tag) not in known]
    fields = fields_of(queue)
    calls = [Call.command("HMGET", ops.keys.stats(step, b), *fields) for b in missing]
    replies: list[Any] = (yield Op(calls, lambda r: r)) if calls else []
    fresh = {}
    for bucket, values in zip(missing, replies, strict=True):
        # the current bucket is not over: its rate is over the part its counts cover
        elapsed = min(step, max(1.0, now - WRITE_LAG / 3 - bucket))
        fresh[bucket] = point(bucket, elapsed, values)
        if bucket + step + SETTLED_AFTER < now:
            known[(step, bucket, tag)] = fresh[bucket]
    _forget_older(known, step, starts[0])
    return step, [fresh[b] if b in fresh else known[(step, b, tag)] for b in starts]


def _forget_older(cache: PointCache, step: int, first: int) -> None:
    """Drop cached points of `step` that left the window."""
    for key in [key for key in cache if key[0] == step and key[1] < first]:
        del cache[key]
