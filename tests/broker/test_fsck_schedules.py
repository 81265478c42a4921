"""fsck of the schedules: each broken state reported without a change, repaired so that a
second run finds nothing (an undecodable one is only reported), a healthy one is clean."""

from __future__ import annotations

import redis

from conveyor import Conveyor
from conveyor.broker.fsck import Finding
from conveyor.broker.keys import GlobalKeys
from conveyor.schedule import Schedule
from tests.support.keyspace import dump


def test_broken_schedules_are_reported_then_repaired(
    app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    keys = GlobalKeys(prefix)
    store = app.inspector.schedules
    for schedule_id in ("healthy", "unindexed", "paused", "broken"):
        store.upsert(Schedule.build(schedule_id, "job", every=60))
    store.set_paused("paused", True)
    r.zrem(keys.schedules, "unindexed", "paused")
    r.hset(keys.schedule("broken"), "spec", "{")
    r.zadd(keys.schedules, {"orphan": 1})
    before = dump(r, prefix)
    findings = app.inspector.fsck()
    assert findings == [
        Finding("{schedules}", "index orphan", "index entry without a schedule", ""),
        Finding("{schedules}", "schedule broken", "schedule cannot be decoded: it never fires",
                ""),
        Finding("{schedules}", "schedule paused",
                "schedule missing from the index: it never fires", ""),
        Finding("{schedules}", "schedule unindexed",
                "schedule missing from the index: it never fires", ""),
    ]  # fmt: skip
    assert dump(r, prefix) == before  # reporting changes nothing
    repaired = app.inspector.fsck(repair=True)
    assert [f.action for f in repaired] == ["removed", "", "indexed", "indexed"]
    index = dump(r, prefix)[keys.schedules]
    assert "orphan" not in index and index["paused"] == float("inf")
    assert index["unindexed"] > 1  # its next tick
    assert [f.subject for f in app.inspector.fsck()] == ["schedule broken"]
    assert [i.id for i in store.list()] == ["healthy", "paused", "unindexed"]


def test_healthy_schedules_are_clean(app: Conveyor) -> None:
    app.inspector.schedules.upsert(Schedule.build("a", "job", cron="0 * * * *"))
    assert app.inspector.fsck() == []
