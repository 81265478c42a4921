"""What flow control holds in one queue right now: concurrency slots in use and tasks
waiting for them, rate-limit buckets and how far ahead they are booked, fair groups.

Read by the Inspector for the CLI, the API and the dashboard; two round trips, bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.broker.admin import Procedure
from conveyor.broker.ops import Op, Operations, as_text
from conveyor.broker.scripts import Call

#: Most concurrency keys and rate keys one report reads each.
MAX_FLOW_KEYS = 1000


@dataclass(frozen=True, slots=True)
class ConcurrencyKey:
    """One concurrency key: its slots in use, and the pending tasks waiting for one."""

    key: str
    in_use: int
    waiting: int


@dataclass(frozen=True, slots=True)
class RateBucket:
    """One rate key: how far ahead its starts are reserved (0 when a task may start now)."""

    key: str
    booked_seconds: float


@dataclass(frozen=True, slots=True)
class FlowState:
    """Flow control in one queue."""

    queue: str
    concurrency: list[ConcurrencyKey]
    rates: list[RateBucket]
    #: fair groups with tasks still numbered ahead of the queue's virtual time
    groups: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "queue": self.queue,
            "concurrency": [
                {"key": c.key, "in_use": c.in_use, "waiting": c.waiting} for c in self.concurrency
            ],
            "rates": [{"key": r.key, "booked_seconds": r.booked_seconds} for r in self.rates],
            "groups": self.groups,
        }


def flow_state(ops: Operations, queue: str) -> Procedure[FlowState]:
    """The flow state of `queue` (empty lists for a queue that uses none)."""
    k = ops.queue_keys(queue)
    first = [
        Call.command("SUNION", k.held, k.blocked),
        Call.command("SRANDMEMBER", k.rates, MAX_FLOW_KEYS),
        Call.command("ZCARD", k.groups),
        Call.command("TIME", route=k.held),  # the clock of the queue's node
    ]
    names, rate_names, groups, (seconds, micros) = yield Op(first, lambda r: r)
    concurrency = sorted(as_text(n) for n in names)[:MAX_FLOW_KEYS]
    rates = sorted(as_text(n) for n in rate_names)
    calls = [Call.command("SCARD", k.slots(c)) for c in concurrency]
    calls += [Call.command("LLEN", k.waiting(c)) for c in concurrency]
    calls += [Call.command("GET", k.rate(r)) for r in rates]
    replies = (yield Op(calls, lambda r: r)) if calls else []
    now_ms = int(seconds) * 1000 + int(micros) / 1000
    n = len(concurrency)
    slots = [
        ConcurrencyKey(c, int(replies[i]), int(replies[n + i])) for i, c in enumerate(concurrency)
    ]
    buckets = [
        RateBucket(r, max(0.0, (float(tat) - now_ms) / 1000) if tat is not None else 0.0)
        for r, tat in zip(rates, replies[2 * n :], strict=True)
    ]
    return FlowState(k.queue, slots, buckets, int(groups))
