"""fsck: find (and repair) states of the keyspace that should not exist.

Safe on a live system: the keyspace is read with SCAN and ZSCAN in bounded batches, and
each batch is checked (and repaired) by one atomic script, so a transition running
concurrently is never seen half done.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from conveyor.broker.keys import QueueKeys, validate_queue_name
from conveyor.broker.scripts import Call, load_scripts
from conveyor.broker.sync_broker import SyncBroker
from conveyor.errors import InvalidNameError
from conveyor.model import to_millis

#: Keys read per SCAN/ZSCAN step, and ids checked per script call.
BATCH = 500
#: A scheduled task this late was missed by every scheduler.
STUCK_AFTER = 300.0
#: The states a record may have while listed in each index.
INDEX_STATES = {
    "pending": "pending",
    "active": "active",
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
    """Checks one deployment (one key prefix)."""

    def __init__(self, broker: SyncBroker, *, stuck_after: float = STUCK_AFTER) -> None:
        self.broker = broker
        self.keys = broker.ops.keys
        self.scripts = load_scripts()
        self.stuck_after = stuck_after

    def run(self, repair: bool = False, queues: list[str] | None = None) -> list[Finding]:
        """Every finding, queue by queue; with `repair`, each is fixed as it is found."""
        findings: list[Finding] = []
        if not queues:
            findings, discovered = self._check_registry(repair)
            queues = sorted(set(self._registered()) | discovered)
        for queue in queues:
            keys = self.keys.queue(queue)
            for index in INDEX_STATES:
                findings += self._check_index(keys, index, repair)
            findings += self._check_records(keys, repair)
        return findings

    def _registered(self) -> list[str]:
        (members,) = self.broker.execute([Call.command("SMEMBERS", self.keys.queues)])
        return sorted(m.decode() for m in members)

    def _check_registry(self, repair: bool) -> tuple[list[Finding], set[str]]:
        """Queues that have keys but are missing from the registry (workers and the API
        list queues from it, so such a queue would be invisible)."""
        pattern = re.compile(
            rf"^{re.escape(self.keys.prefix)}:\{{([^}}]+)\}}:(pending|active|scheduled|dead|paused|task:.+)$"
        )
        seen: set[str] = set()
        for key in self._scan(f"{self.keys.prefix}:{{*}}:*"):
            match = pattern.match(key)
            if match:
                seen.add(match[1])
        missing = sorted(seen - set(self._registered()))
        valid = [q for q in missing if _valid_queue(q)]
        if repair and valid:
            self.broker.execute([Call.command("SADD", self.keys.queues, *valid)])
        action = "registered" if repair else ""
        findings = [Finding(q, self.keys.queues, "queue missing from the registry",
                            action if q in valid else "") for q in missing]  # fmt: skip
        return findings, set(valid)

    def _check_index(self, keys: QueueKeys, index: str, repair: bool) -> list[Finding]:
        index_key = getattr(keys, index)
        findings = []
        cursor = 0
        while True:
            cursor, entries = self.broker.execute(
                [Call.command("ZSCAN", index_key, cursor, "COUNT", BATCH)]
            )[0]
            ids = [member.decode() for member in _members(entries)]
            if ids:
                call = Call.script_call(
                    self.scripts["fsck_index"],
                    [index_key, keys.task_prefix],
                    [int(repair), INDEX_STATES[index], *ids],
                )
                findings += _findings(keys.queue, self.broker.execute([call])[0], index)
            if int(cursor) == 0:
                return findings

    def _check_records(self, keys: QueueKeys, repair: bool) -> list[Finding]:
        findings = []
        prefix = keys.task_prefix
        batch: list[str] = []
        for key in self._scan(_glob_escape(prefix) + "*"):
            batch.append(key[len(prefix) :])
            if len(batch) >= BATCH:
                findings += self._records_batch(keys, batch, repair)
                batch = []
        if batch:
            findings += self._records_batch(keys, batch, repair)
        return findings

    def _records_batch(self, keys: QueueKeys, ids: list[str], repair: bool) -> list[Finding]:
        s = self.broker.settings
        retention = [
            to_millis(t)
            for t in (s.succeeded_retention, s.failed_retention, s.cancelled_retention,
                      s.dead_retention)
        ]  # fmt: skip
        call = Call.script_call(
            self.scripts["fsck_records"],
            [keys.pending, keys.active, keys.scheduled, keys.dead, keys.task_prefix],
            [int(repair), *retention, to_millis(self.stuck_after), *ids],
        )
        return _findings(keys.queue, self.broker.execute([call])[0], "record")

    def _scan(self, pattern: str) -> Iterator[str]:
        cursor = 0
        while True:
            cursor, keys = self.broker.execute(
                [Call.command("SCAN", cursor, "MATCH", pattern, "COUNT", BATCH)]
            )[0]
            yield from (k.decode() for k in keys)
            if int(cursor) == 0:
                return


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
