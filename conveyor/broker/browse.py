"""What an operator browses: a queue's tasks by state, page by page, and the history of
outcomes and latencies behind the charts. Written once for the Inspector's two faces."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from conveyor.broker.admin import Procedure, command
from conveyor.broker.dead_letters import decode_or_placeholder
from conveyor.broker.keys import DEFAULT_BAND_END
from conveyor.broker.ops import Op, Operations
from conveyor.broker.scripts import Call
from conveyor.broker.timeseries import WINDOWS, WRITE_LAG, Point, buckets, fields_of, point
from conveyor.ids import SEPARATOR
from conveyor.model import TaskRecord, TaskState

#: The states whose tasks are indexed, so they can be listed: each is a ZSET of the queue
#: (pending: a ZSET and a LIST).
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
    k = ops.queue_keys(queue)
    if state == "pending":
        count, ids = yield from _pending_page(ops, queue, newest_first, offset, limit)
    elif limit <= 0:  # a range to -1 would read the whole index
        total: int = yield Op([Call.command("ZCARD", getattr(k, state))], lambda r: int(r[0]))
        return total, []
    else:
        index = getattr(k, state)
        read = "ZREVRANGE" if newest_first else "ZRANGE"
        count, ids = yield Op(
            [Call.command("ZCARD", index), Call.command(read, index, offset, offset + limit - 1)],
            lambda replies: (int(replies[0]), [i.decode() for i in replies[1]]),
        )
    raws = yield Op([Call.command("HGETALL", k.task(i)) for i in ids], lambda replies: replies)
    placeholder = TaskState(state)
    records = [
        decode_or_placeholder(i, queue, raw, placeholder) for i, raw in zip(ids, raws, strict=True)
    ]
    return count, records


def _pending_page(
    ops: Operations, queue: str, newest_first: bool, offset: int, limit: int
) -> Procedure[tuple[int, list[str]]]:
    """(total, ids) of a page of pending tasks, by priority as claims take them: the
    `pending` ZSET's entries down to the default priority, the `ready` list, then the
    ZSET's lower priorities. (Within the default priority, claims take the ZSET's entries
    in turns with the list's; a page lists the first before the second.)"""
    k = ops.queue_keys(queue)
    above, listed, banded = yield Op(
        [
            Call.command("ZCOUNT", k.pending, "-inf", f"({DEFAULT_BAND_END}"),
            Call.command("LLEN", k.ready),
            Call.command("ZCARD", k.pending),
        ],
        lambda replies: [int(r) for r in replies],
    )
    total = listed + banded
    first, last = offset, min(offset + limit, total) - 1  # positions in claim order
    if newest_first:
        first, last = total - 1 - last, total - 1 - offset
    # the three segments in claim order: (key, read, its first position, where it starts,
    # what its entries lack of an id: a ready entry is the ULID alone)
    head = f"{queue}{SEPARATOR}"
    segments = [
        (k.pending, "ZRANGE", 0, 0, ""),
        (k.ready, "LRANGE", above, 0, head),
        (k.pending, "ZRANGE", above + listed, above, ""),
    ]
    ends = [above, above + listed, total]
    calls, heads = [], []
    for (key, read, start, base, missing), end in zip(segments, ends, strict=True):
        lo, hi = max(first, start), min(last, end - 1)
        if lo <= hi:
            calls.append(Call.command(read, key, lo - start + base, hi - start + base))
            heads.append(missing)
    if not calls:
        return total, []
    replies = yield Op(calls, lambda replies: replies)
    ids = [h + i.decode() for h, reply in zip(heads, replies, strict=True) for i in reply]
    return total, ids[::-1] if newest_first else ids


def history(
    ops: Operations, window: str, queue: str | None, cache: PointCache | None = None
) -> Procedure[tuple[int, list[Point]]]:
    """(step seconds, points oldest first) of `window` ("15m", "1h", "24h") for one queue or
    all. Settled buckets found in `cache` are not read again; those read are added to it."""
    seconds, micros = yield command("TIME")
    now = int(seconds) + int(micros) / 1e6
    if window not in WINDOWS:
        raise ValueError(f"unknown window {window!r}: use one of {sorted(WINDOWS)}")
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
        elapsed = min(step, max(1.0, now - WRITE_LAG - bucket))
        fresh[bucket] = point(bucket, elapsed, values)
        if bucket + step + SETTLED_AFTER < now:
            known[(step, bucket, tag)] = fresh[bucket]
    _forget_older(known, step, starts[0])
    return step, [fresh[b] if b in fresh else known[(step, b, tag)] for b in starts]


def _forget_older(cache: PointCache, step: int, first: int) -> None:
    """Drop cached points of `step` that left the window."""
    for key in [key for key in cache if key[0] == step and key[1] < first]:
        del cache[key]
