"""fsck: find (and repair) states of the keyspace that should not exist.

Safe on a live system: the keyspace is read with SCAN and ZSCAN in bounded batches, and
each batch is checked (and repaired) by one atomic script, so a transition running
concurrently is never seen half done.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.broker.admin import Admin, Procedure, command
from conveyor.broker.keys import QueueKeys
from conveyor.broker.ops import Op, Operations, raw
from conveyor.broker.scripts import Call
from conveyor.errors import InvalidNameError
from conveyor.ids import SEPARATOR
from conveyor.model import to_millis
from conveyor.names import validate_queue_name

#: Keys read per SCAN/ZSCAN step, and ids checked per script call.
BATCH = 500
#: A scheduled task this late was missed by every scheduler.
STUCK_AFTER = 300.0
#: The states a record may have while listed in each index.
INDEX_STATES = {
    "pending": "pending",
    "ready": "pending",
    # a cancelling task keeps its lease until its worker stopped it
    "active": "active,cancelling",
    "scheduled": "scheduled,retrying",
    "dead": "dead",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One inconsistency: where, what, and what the repair did ("" when not repairing)."""

    queue: str
    subject: str
    problem: str
    action: str

    def __str__(self) -> str:
        done = f" -> {self.action}" if self.action else ""
        return f"{self.queue}\t{self.subject}\t{self.problem}{done}"


class Fsck:
    """Checks one deployment (one key prefix): sans-IO, run by the Inspector."""

    def __init__(self, ops: Operations, *, stuck_after: float = STUCK_AFTER) -> None:
        self.ops = ops
        self.keys = ops.keys
        self.stuck_after = stuck_after

    def run(self, repair: bool = False, queues: Sequence[str] = ()) -> Procedure[list[Finding]]:
        """Every finding, queue by queue; with `repair`, each is fixed as it is found."""
        findings: list[Finding] = []
        if not queues:
            from conveyor.broker.fsck_schedules import check_schedules  # it imports this

            findings, discovered = yield from self._check_registry(repair)
            findings += yield from check_schedules(self.ops, repair)
            registered = yield from self._registered()
            queues = sorted(set(registered) | discovered)
        for queue in queues:
            keys = self.keys.queue(queue)
            listed: set[str] = set()
            for index in INDEX_STATES:
                findings += yield from self._check_index(keys, index, repair, listed)
            findings += yield from self._check_records(keys, repair, listed)
            findings += yield from self._check_flow(keys, repair)
        return findings

    def _nodes(self) -> Procedure[list[str | None]]:
        """Where a scan of the whole keyspace must look: each master of a Redis Cluster
        (SCAN reads one node), or the one Redis (None)."""
        masters = yield from Admin(self.ops).cluster_masters()
        nodes: list[str | None] = [*sorted({m.address for m in masters})]
        return nodes or [None]

    def _registered(self) -> Procedure[list[str]]:
        members = yield command("SMEMBERS", self.keys.queues)
        return sorted(m.decode() for m in members)

    def _check_registry(self, repair: bool) -> Procedure[tuple[list[Finding], set[str]]]:
        """Queues that have keys but are missing from the registry (workers and the API
        list queues from it, so such a queue would be invisible)."""
        pattern = re.compile(
            rf"^{re.escape(self.keys.prefix)}:\{{([^}}]+)\}}:(pending|ready|active|scheduled|dead|paused|task:.+)$"
        )
        seen: set[str] = set()
        for node in (yield from self._nodes()):
            cursor = 0
            while True:
                cursor, keys = yield self._scan(cursor, f"{self.keys.prefix}:{{*}}:*", node=node)
                seen.update(match[1] for match in map(pattern.match, keys) if match)
                if cursor == 0:
                    break
        missing = sorted(seen - set((yield from self._registered())))
        valid = [q for q in missing if _valid_queue(q)]
        if repair and valid:
            yield command("SADD", self.keys.queues, *valid)
        action = "registered" if repair else ""
        findings = [Finding(q, self.keys.queues, "queue missing from the registry",
                            action if q in valid else "") for q in missing]  # fmt: skip
        return findings, set(valid)

    def _check_index(
        self, keys: QueueKeys, index: str, repair: bool, listed: set[str]
    ) -> Procedure[list[Finding]]:
        """Check one index's entries; the ids met in the ready list are added to `listed`,
        for the record check (a record cannot be looked up in a list but by a scan)."""
        index_key = getattr(keys, index)
        findings = []
        cursor = 0
        while True:
            reach = 0  # how far from the list's head the ids were read
            if index == "ready":
                entries = yield command("LRANGE", index_key, cursor, cursor + BATCH - 1)
                ids = [f"{keys.queue}{SEPARATOR}{member.decode()}" for member in entries]
                listed.update(ids)
                reach = cursor + len(ids)
                cursor = cursor + BATCH if len(ids) == BATCH else 0
            else:
                cursor, entries = yield command("ZSCAN", index_key, cursor, "COUNT", BATCH)
                ids = [member.decode() for member in _members(entries)]
            if ids:
                call = Call.script_call(
                    self.ops.scripts["fsck_index"],
                    [index_key, keys.task_prefix],
                    [int(repair), INDEX_STATES[index], reach, *ids],
                )
                found = _findings(keys.queue, (yield raw(call)), index)
                if index == "ready" and cursor and repair:
                    cursor -= len(found)  # the entries dropped shifted the rest left
                findings += found
            if int(cursor) == 0:
                return findings

    def _check_records(
        self, keys: QueueKeys, repair: bool, listed: set[str]
    ) -> Procedure[list[Finding]]:
        findings = []
        prefix = keys.task_prefix
        cursor = 0
        while True:
            cursor, found = yield self._scan(cursor, _glob_escape(prefix) + "*", keys.base)
            ids = [key[len(prefix) :] for key in found]
            for start in range(0, len(ids), BATCH):
                batch = ids[start : start + BATCH]
                findings += yield from self._records_batch(keys, batch, repair, listed)
            if cursor == 0:
                return findings

    def _records_batch(
        self, keys: QueueKeys, ids: list[str], repair: bool, listed: set[str]
    ) -> Procedure[list[Finding]]:
        s = self.ops.settings
        retention = [
            to_millis(t)
            for t in (s.succeeded_retention, s.failed_retention, s.cancelled_retention,
                      s.dead_retention)
        ]  # fmt: skip
        call = Call.script_call(
            self.ops.scripts["fsck_records"],
            [
                keys.pending,
                keys.active,
                keys.scheduled,
                keys.dead,
                keys.task_prefix,
                keys.ready,
                keys.flow_prefix,
                keys.events,
            ],
            [
                int(repair),
                *retention,
                to_millis(self.stuck_after),
                *(arg for i in ids for arg in (i, int(i in listed))),
            ],
        )
        return _findings(keys.queue, (yield raw(call)), "record")

    def _check_flow(self, keys: QueueKeys, repair: bool) -> Procedure[list[Finding]]:
        """Concurrency slots and waiting lists (by their registries), and unique keys (by
        a scan), against the records they name; after the record check, which may have
        taken a task out of `active`."""
        concurrency = yield command("SUNION", keys.held, keys.blocked)
        names = sorted(c.decode() for c in concurrency)
        unique_prefix = keys.unique("")
        cursor = 0
        locks: list[str] = []
        while True:
            cursor, found = yield self._scan(cursor, _glob_escape(unique_prefix) + "*", keys.base)
            locks += [key[len(unique_prefix) :] for key in found]
            if cursor == 0:
                break
        findings = []
        for kind, batch_of in (("concurrency", names), ("unique", locks)):
            for start in range(0, len(batch_of), BATCH):
                call = Call.script_call(
                    self.ops.scripts["fsck_flow"],
                    [keys.active, keys.task_prefix, keys.flow_prefix, keys.pending, keys.signal],
                    [int(repair), kind, *batch_of[start : start + BATCH]],
                )
                findings += _findings(keys.queue, (yield raw(call)), "flow")
        return findings

    @staticmethod
    def _scan(
        cursor: int, pattern: str, route: str | None = None, *, node: str | None = None
    ) -> Op[tuple[int, list[str]]]:
        """One SCAN step: the next cursor (0 at the end) and the keys it found; on a Redis
        Cluster, on the node of the key `route` (a queue's keys share its slot) or on the
        master `node`."""

        def decode(replies: list[Any]) -> tuple[int, list[str]]:
            cursor, keys = replies[0]
            return int(cursor), [k.decode() for k in keys]

        scan = Call.command(
            "SCAN", cursor, "MATCH", pattern, "COUNT", BATCH, route=route, node=node
        )
        return Op([scan], decode)


def _findings(queue: str, reply: list[Any], where: str) -> list[Finding]:
    items = iter(reply)
    return [
        Finding(queue, f"{where} {subject.decode()}", problem.decode(), action.decode())
        for subject, problem, action in zip(items, items, items, strict=True)
    ]


def _members(entries: list[Any]) -> list[bytes]:
    """ZSCAN's members: redis-py pairs them with their scores, a raw reply is flat."""
    if entries and isinstance(entries[0], list | tuple):
        return [member for member, _ in entries]
    return list(entries[0::2])


def _glob_escape(text: str) -> str:
    """Escape the glob characters of a key prefix (its `{queue}` has none, but be exact)."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _valid_queue(name: str) -> bool:
    try:
        validate_queue_name(name)
    except InvalidNameError:
        return False
    return True
