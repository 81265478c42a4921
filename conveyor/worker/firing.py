"""Which ticks of a schedule to fire now: the misfire policies, as a pure function of the
schedule, its cursor and Redis' clock, so every worker decides the same.

A tick's task carries the idempotency key `schedule:<id>:<tick ms>` (`Schedule.tick_key`):
however many workers fire the same tick, one task is stored. The key lives for the
idempotency window from the first enqueue, so no tick older than that window (less a
margin) is ever fired.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.schedule import Schedule

#: A tick fired at most this late is on time: a "skip" schedule fires it all the same.
MISFIRE_GRACE_MS = 10_000
#: Most missed ticks an "all" schedule fires at once (the latest ones).
MAX_CATCH_UP = 100
#: Margin kept below the idempotency window, for the time between reading Redis' clock
#: and the enqueue (and a window shorter than twice this keeps half of itself).
WINDOW_MARGIN_MS = 60_000


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do for one schedule now."""

    #: ticks to enqueue (ms), oldest first
    ticks: list[int]
    #: the new cursor: ticks at or before it are done
    cursor: int
    #: the first tick after the new cursor
    next_due: int


def horizon(window_ms: int) -> int:
    """How far back (ms) a tick may be fired and still be deduplicated by its key."""
    return window_ms - min(WINDOW_MARGIN_MS, window_ms // 2)


def plan(schedule: Schedule, cursor: int, now: int, window_ms: int) -> Plan:
    """The ticks to fire in (cursor, now] under the schedule's misfire policy.

    "skip" fires only a tick at most MISFIRE_GRACE_MS late, "once" the latest tick
    however late, "all" the latest MAX_CATCH_UP; none older than `horizon(window_ms)`.
    """
    timing = schedule.timing
    latest = timing.latest(cursor, now, 1)
    if not latest:  # nothing due (an index entry ahead of its time): just re-arm it
        return Plan([], cursor, timing.next_after(max(cursor, now)))
    last = latest[0]
    floor = max(cursor, now - horizon(window_ms))
    if schedule.misfire == "all":
        ticks = timing.latest(floor, now, MAX_CATCH_UP)
    elif schedule.misfire == "once" or now - last <= MISFIRE_GRACE_MS:
        ticks = [last] if last > floor else []
    else:
        ticks = []
    return Plan(ticks, last, timing.next_after(last))
