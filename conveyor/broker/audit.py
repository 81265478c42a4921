"""The audit log: who did what to which tasks, from where, kept in Redis and bounded.
Entries carry the clock of the process that acted.

The dashboard, the API and the CLI pass an `Actor` to the Inspector's actions, which
append one entry each once the action is done. Library calls without an actor are not
logged: they are the application's own doing, not an operator's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from conveyor import serializers
from conveyor.broker.keys import GlobalKeys
from conveyor.broker.ops import Op
from conveyor.broker.scripts import Call
from conveyor.broker.steps import Steps
from conveyor.model import utc_iso

T = TypeVar("T")

#: Entries kept; older ones are dropped as new ones arrive.
MAX_ENTRIES = 10_000
#: Longest target text kept in an entry (a bulk action lists its ids up to this).
MAX_TARGET = 500


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a token's name (or "anonymous" where no tokens are set, or the CLI's
    `cli:user@host`), through which door, and from which address."""

    name: str
    via: str  # dashboard, api, cli
    address: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One operator action."""

    at: datetime
    actor: str
    via: str
    address: str | None
    action: str
    target: str
    count: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (time as ISO 8601)."""
        out = {name: getattr(self, name) for name in self.__slots__}
        out["at"] = utc_iso(self.at)
        return out

    @classmethod
    def from_json(cls, raw: bytes) -> AuditEntry:
        """Decode a stored entry."""
        entry = serializers.loads(raw)
        at = datetime.fromtimestamp(entry["at"], tz=UTC)
        return cls(
            at, entry["actor"], entry["via"], entry.get("address"), entry["action"],
            entry.get("target", ""), int(entry.get("count", 0)),
        )  # fmt: skip


def record(keys: GlobalKeys, actor: Actor, action: str, target: str, count: int) -> Op[None]:
    """Append an entry and drop the oldest beyond MAX_ENTRIES, in one round trip."""
    if len(target) > MAX_TARGET:
        target = target[: MAX_TARGET - 6] + " [...]"
    entry = serializers.dumps({
        "at": time.time(), "actor": actor.name, "via": actor.via, "address": actor.address,
        "action": action, "target": target, "count": count,
    })  # fmt: skip
    calls = [
        Call.command("LPUSH", keys.audit, entry),
        Call.command("LTRIM", keys.audit, 0, MAX_ENTRIES - 1),
    ]
    return Op(calls, lambda replies: None)


def read(keys: GlobalKeys, offset: int, limit: int) -> Op[tuple[int, list[AuditEntry]]]:
    """(total, page) of the log, newest first."""
    if limit <= 0:  # an LRANGE to -1 would read the whole log
        return Op([Call.command("LLEN", keys.audit)], lambda r: (int(r[0]), []))
    calls = [
        Call.command("LLEN", keys.audit),
        Call.command("LRANGE", keys.audit, offset, offset + limit - 1),
    ]
    return Op(calls, lambda r: (int(r[0]), [AuditEntry.from_json(e) for e in r[1]]))


def audited(
    keys: GlobalKeys,
    procedure: Steps[Op[Any], T],
    actor: Actor | None,
    action: str,
    target: str,
    count: Callable[[T], int],
) -> Steps[Op[Any], T]:
    """Run an action's procedure, then log it (with `count(result)` tasks) if an actor acts."""
    result = yield from procedure
    if actor is not None:
        yield record(keys, actor, action, target, count(result))
    return result
