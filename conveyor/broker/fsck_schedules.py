"""fsck of the schedules: hashes that cannot be decoded (never fired), schedules missing
from the index (never fired either), and index entries whose schedule is gone."""

from __future__ import annotations

from typing import Any

from conveyor.broker.admin import Procedure, command
from conveyor.broker.fsck import BATCH, Finding
from conveyor.broker.ops import Operations, raw, scored
from conveyor.broker.schedules import MAX_SCHEDULES, ScheduleAdmin
from conveyor.broker.scripts import Call
from conveyor.errors import ConveyorError
from conveyor.schedule import Schedule

#: The `queue` column of the schedules' findings.
WHERE = "{schedules}"


def check_schedules(ops: Operations, repair: bool) -> Procedure[list[Finding]]:
    """Every finding about the schedules; with `repair`, the index is mended (a schedule
    that cannot be decoded is only reported: its definition is the operator's to fix)."""
    keys = ops.keys
    admin = ScheduleAdmin(ops)
    entries = yield command("ZRANGE", keys.schedules, 0, MAX_SCHEDULES - 1, "WITHSCORES")
    indexed = {member.decode() for member, _ in scored(entries)}
    stored = yield from _stored_ids(ops)
    findings = []
    for schedule_id in sorted(indexed - stored):
        if repair:
            yield admin.forget(schedule_id)
        findings.append(Finding(WHERE, f"index {schedule_id}", "index entry without a schedule",
                                "removed" if repair else ""))  # fmt: skip
    for schedule_id in sorted(stored):
        raw: Any = yield command("HGETALL", keys.schedule(schedule_id))
        try:
            schedule = Schedule.from_spec(raw[b"spec"])
            cursor = int(raw[b"cursor"])
        except (ConveyorError, KeyError, TypeError, ValueError):
            findings.append(Finding(WHERE, f"schedule {schedule_id}",
                                    "schedule cannot be decoded: it never fires", ""))  # fmt: skip
            continue
        if schedule_id not in indexed:
            if repair:  # NX: a worker or an upsert may have indexed it meanwhile
                now = yield from admin.now()
                due = schedule.timing.next_after(max(cursor, now))
                score = "+inf" if raw.get(b"paused") == b"1" else due
                yield command("ZADD", keys.schedules, "NX", score, schedule_id)
            findings.append(Finding(WHERE, f"schedule {schedule_id}",
                                    "schedule missing from the index: it never fires",
                                    "indexed" if repair else ""))  # fmt: skip
    return findings


def _stored_ids(ops: Operations) -> Procedure[set[str]]:
    prefix = ops.keys.schedule_prefix
    found: set[str] = set()
    cursor = 0
    while True:
        # on a Redis Cluster, on the node of the `{schedules}` slot
        scan = Call.command("SCAN", cursor, "MATCH", prefix + "*", "COUNT", BATCH,
                            route=ops.keys.schedules)  # fmt: skip
        cursor, keys = yield raw(scan)
        found.update(key.decode()[len(prefix) :] for key in keys)
        if int(cursor) == 0 or len(found) >= MAX_SCHEDULES:
            return found
