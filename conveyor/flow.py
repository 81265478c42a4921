"""Flow control's pure parts: rate-limit syntax, the keys a task's options resolve to, and
the `flow` field that carries them on the task record (read by the Lua scripts, see
`broker/lua/prelude.lua`).

A task without any of these options has no `flow` field and costs nothing more.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from conveyor.errors import ConfigurationError

if TYPE_CHECKING:
    from conveyor.options import TaskOptions

#: What a unique task does when its key is held by a live task: `skip` answers with that
#: task; `replace` gives it the new arguments and delay if it has not started (debounce);
#: `throttle` keeps the key for a window whatever becomes of the task.
UniqueMode = Literal["skip", "replace", "throttle"]
UNIQUE_MODES: tuple[UniqueMode, ...] = ("skip", "replace", "throttle")
#: Longest key a unique, concurrency, rate-limit or group option may give.
MAX_FLOW_KEY = 200
#: How late (ms) a task may start after the start its rate limit reserved for it and still
#: use it (at least one interval); later, it takes a new one. Shared with the scripts.
RATE_SLIP_MS = 25

_PERIODS_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate limit: at most `count` task starts per `period_ms`."""

    count: int
    period_ms: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """`"100/s"`, `"10/m"`, `"5/h"`, `"1000/d"`, or with a multiple: `"10/5s"`."""
        match = _RATE.match(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigurationError(
                f"rate_limit must look like '100/s', '10/m', '5/h' or '10/5s', got {text!r}"
            )
        count, multiple, unit = int(match[1]), int(match[2] or 1), match[3][0]
        if count < 1 or multiple < 1:
            raise ConfigurationError(f"rate_limit must allow at least 1 task, got {text!r}")
        return cls(count, multiple * _PERIODS_MS[unit])


def validate_key(option: str, value: object) -> str:
    """A flow key as given: a string of 1..MAX_FLOW_KEY characters."""
    if not (isinstance(value, str) and 0 < len(value) <= MAX_FLOW_KEY):
        raise ConfigurationError(f"{option} must be a string of 1-{MAX_FLOW_KEY} characters")
    return value


def arguments_digest(args: bytes | None, kwargs: bytes | None) -> str:
    """A short digest of a task's encoded arguments: the default unique key's tail."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(args or b"[]")
    digest.update(b"\0")
    digest.update(kwargs or b"{}")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Flow:
    """The flow control of one task, resolved: what the scripts read from its record."""

    unique_key: str | None = None
    unique_mode: UniqueMode = "skip"
    unique_window_ms: int = 0
    concurrency_key: str | None = None
    concurrency: int = 1
    rate_key: str | None = None
    rate: Rate | None = None
    rate_burst: int = 1
    group: str | None = None

    def field(self) -> bytes:
        """The record's `flow` field (compact JSON; the keys are prelude.lua's)."""
        out: dict[str, object] = {}
        if self.unique_key is not None:
            out |= {"u": self.unique_key, "um": self.unique_mode}
        if self.concurrency_key is not None:
            out |= {"c": self.concurrency_key, "cl": self.concurrency}
        if self.rate_key is not None and self.rate is not None:
            out |= {"r": self.rate_key, "rn": self.rate.count, "rp": self.rate.period_ms}
            if self.rate_burst != 1:
                out["rb"] = self.rate_burst
        if self.group is not None:
            out["g"] = self.group
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()


def resolve_flow(
    name: str, options: TaskOptions, args: bytes | None, kwargs: bytes | None
) -> Flow | None:
    """The flow control a task's options ask for, or None (the common case, at once).

    A unique key is scoped by the task's name (the default key is its arguments'
    digest); concurrency and rate keys default to the task's name and are shared by every
    task of the queue that names the same key.
    """
    o = options
    if not (o.unique or o.rate_limit or o.concurrency or o.group_key):
        return None
    unique_key = None
    if o.unique:
        unique_key = f"{name}:{o.unique_key or arguments_digest(args, kwargs)}"
    return Flow(
        unique_key=unique_key,
        unique_mode="skip" if o.unique is True or not o.unique else o.unique,
        unique_window_ms=round((o.unique_window or 0) * 1000),
        concurrency_key=(o.concurrency_key or name) if o.concurrency else None,
        concurrency=o.concurrency or 1,
        rate_key=(o.rate_limit_key or name) if o.rate_limit else None,
        rate=Rate.parse(o.rate_limit) if o.rate_limit else None,
        rate_burst=o.rate_limit_burst or 1,
        group=o.group_key,
    )
