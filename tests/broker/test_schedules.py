"""The schedule scripts (upsert_schedule, advance_schedule, pause_schedule) and the
Inspector's schedules: seed, run, assert the whole keyspace."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from conveyor import Conveyor
from conveyor.broker.keys import GlobalKeys
from conveyor.broker.schedules import Due, ScheduleAdmin, ScheduleNotFoundError, SyncSchedules
from conveyor.broker.steps import drive
from conveyor.broker.sync_broker import SyncBroker
from conveyor.schedule import Schedule
from tests.broker.seed import clock, redis_ms
from tests.support.keyspace import dump

INF = float("inf")


@pytest.fixture
def store(app: Conveyor) -> SyncSchedules:
    return app.inspector.schedules


@pytest.fixture
def gk(prefix: str) -> GlobalKeys:
    return GlobalKeys(prefix)


def every(seconds: float = 60, schedule_id: str = "s", **given: Any) -> Schedule:
    return Schedule.build(schedule_id, "job", every=seconds, **given)


def next_tick(now: int, seconds: int = 60) -> int:
    return (now // (seconds * 1000) + 1) * seconds * 1000


def test_upsert_creates_a_schedule_and_indexes_its_next_tick(
    store: SyncSchedules, r: redis.Redis, prefix: str, gk: GlobalKeys
) -> None:
    schedule = every(60, args=[1])
    with clock(r) as window:
        assert store.upsert(schedule) == "created"
    state = dump(r, prefix)
    assert set(state) == {gk.schedules, gk.schedule("s")}
    record = state[gk.schedule("s")]
    now = int(record["cursor"])
    assert window.now == now
    assert record == {
        "spec": schedule.spec().decode(), "timing": "every 60s", "origin": "api",
        "cursor": str(now), "paused": "0", "runs": "0", "created_at": str(now),
        "updated_at": str(now),
    }  # fmt: skip
    assert state[gk.schedules] == {"s": next_tick(now)}
    assert gk.schedules.startswith(f"{prefix}:{{schedules}}:")  # one slot for them all


def test_an_unchanged_upsert_changes_nothing_but_a_declaration(
    store: SyncSchedules, r: redis.Redis, prefix: str, gk: GlobalKeys
) -> None:
    store.upsert(every(60), origin="code")
    before = dump(r, prefix)
    assert store.upsert(every(60), origin="code") == "unchanged"
    after = dump(r, prefix)
    declared = after[gk.schedule("s")].pop("declared_at")
    before[gk.schedule("s")].pop("declared_at")
    assert after == before and int(declared) >= int(before[gk.schedule("s")]["cursor"])


def test_new_arguments_keep_the_cursor_and_a_new_timing_resets_it(
    store: SyncSchedules, r: redis.Redis, prefix: str, gk: GlobalKeys
) -> None:
    store.upsert(every(60))
    r.hset(gk.schedule("s"), "cursor", 1000)  # as if it had fired long ago
    assert store.upsert(every(60, args=["new"])) == "updated"
    record = dump(r, prefix)[gk.schedule("s")]
    assert record["cursor"] == "1000" and record["spec"] == every(60, args=["new"]).spec().decode()
    with clock(r) as window:
        assert store.upsert(every(120, args=["new"])) == "updated"
    state = dump(r, prefix)
    assert window.now == state[gk.schedule("s")]["cursor"]  # ticks count from the change
    assert state[gk.schedule("s")]["timing"] == "every 120s"
    assert state[gk.schedules]["s"] == next_tick(int(state[gk.schedule("s")]["cursor"]), 120)


def test_a_paused_schedule_stays_paused_across_upserts(
    store: SyncSchedules, r: redis.Redis, prefix: str, gk: GlobalKeys
) -> None:
    store.upsert(every(60))
    info = store.set_paused("s", True)
    assert info.paused and info.next_run is None
    assert dump(r, prefix)[gk.schedules] == {"s": INF}
    store.upsert(every(30))
    state = dump(r, prefix)
    assert state[gk.schedules] == {"s": INF} and state[gk.schedule("s")]["paused"] == "1"


def test_resume_counts_ticks_from_now(
    store: SyncSchedules, r: redis.Redis, prefix: str, gk: GlobalKeys
) -> None:
    store.upsert(every(60))
    store.set_paused("s", True)
    r.hset(gk.schedule("s"), "cursor", 1000)
    store.set_paused("s", True)  # twice: the same
    with clock(r) as window:
        info = store.set_paused("s", False)
    state = dump(r, prefix)
    cursor = int(state[gk.schedule("s")]["cursor"])
    assert window.now == cursor and state[gk.schedule("s")]["paused"] == "0"
    assert state[gk.schedules] == {"s": next_tick(cursor)}
    assert not info.paused and info.next_run is not None
    before = dump(r, prefix)
    store.set_paused("s", False)  # resuming a running schedule changes nothing
    assert dump(r, prefix) == before


def test_unknown_schedules_are_not_found_and_create_nothing(
    store: SyncSchedules, r: redis.Redis, prefix: str
) -> None:
    for act in (
        lambda: store.get("nope"),
        lambda: store.remove("nope"),
        lambda: store.set_paused("nope", True),
        lambda: store.set_paused("nope", False),
    ):
        with pytest.raises(ScheduleNotFoundError, match="no schedule 'nope'"):
            act()
    assert dump(r, prefix) == {}


def test_remove_deletes_the_hash_and_the_index_entry(
    store: SyncSchedules, r: redis.Redis, prefix: str
) -> None:
    store.upsert(every(60))
    store.upsert(every(60, "other"))
    store.remove("s")
    assert [i.id for i in store.list()] == ["other"]
    store.remove("other")
    assert dump(r, prefix) == {}


def test_list_reports_state_and_leaves_out_what_cannot_be_decoded(
    store: SyncSchedules, r: redis.Redis, gk: GlobalKeys
) -> None:
    store.upsert(every(60, "b"))
    store.upsert(every(60, "a", misfire="all"))
    store.set_paused("b", True)
    r.hset(gk.schedule("c"), mapping={"spec": "{broken", "cursor": 0})
    r.zadd(gk.schedules, {"c": 0})
    infos = store.list()
    assert [(i.id, i.paused, i.next_run is None) for i in infos] == [
        ("a", False, False),
        ("b", True, True),
    ]
    assert infos[0].schedule.misfire == "all" and infos[0].runs == 0
    assert infos[0].last_run is None and infos[0].origin == "api"
    assert infos[0].to_json()["next_run"].endswith("Z")


# -- advance_schedule.lua ------------------------------------------------------------------


def advance(broker: SyncBroker, schedule: Schedule, read: int, **given: Any) -> int:
    admin = ScheduleAdmin(broker.ops)
    args = {"cursor": 120_000, "next_due": 180_000, "fired": 1, "last": 120_000, "task": "t1"}
    args.update(given)
    op = admin.advance(Due(schedule, read), **args)  # type: ignore[arg-type]
    result: int = broker.run(op)
    return result


def test_advance_moves_the_cursor_only_from_the_one_read(
    store: SyncSchedules, broker: SyncBroker, r: redis.Redis, prefix: str, gk: GlobalKeys
) -> None:
    store.upsert(every(60))
    r.hset(gk.schedule("s"), "cursor", 60_000)
    assert advance(broker, every(60), 1) == 0  # another worker moved it: nothing written
    assert dump(r, prefix)[gk.schedule("s")]["cursor"] == "60000"
    assert advance(broker, every(60), 60_000) == 1
    state = dump(r, prefix)
    record = state[gk.schedule("s")]
    assert (record["cursor"], record["last_run"], record["last_task"], record["runs"]) == (
        "120000", "120000", "t1", "1"
    )  # fmt: skip
    assert state[gk.schedules] == {"s": 180_000}
    assert advance(broker, every(60), 60_000) == 0  # the same tick, a second time: refused
    # a step that fired nothing moves the cursor and the index, not the last run
    assert advance(broker, every(60), 120_000, cursor=180_000, next_due=240_000, fired=0) == 1
    record = dump(r, prefix)[gk.schedule("s")]
    assert (record["cursor"], record["last_run"], record["runs"]) == ("180000", "120000", "1")


def test_advance_keeps_a_schedule_paused_meanwhile_paused(
    store: SyncSchedules, broker: SyncBroker, r: redis.Redis, prefix: str, gk: GlobalKeys
) -> None:
    store.upsert(every(60))
    cursor = int(r.hget(gk.schedule("s"), "cursor") or 0)
    store.set_paused("s", True)
    assert advance(broker, every(60), cursor) == 1
    assert dump(r, prefix)[gk.schedules] == {"s": INF}


def test_advance_never_writes_back_a_removed_schedule(
    store: SyncSchedules, broker: SyncBroker, r: redis.Redis, prefix: str, gk: GlobalKeys
) -> None:
    store.upsert(every(60))
    r.delete(gk.schedule("s"))  # removed between the read and the check-and-set
    assert advance(broker, every(60), 0) == -1
    assert dump(r, prefix) == {}  # and the index entry that outlived it is gone too


def test_due_reads_what_has_come_with_redis_time(
    store: SyncSchedules, broker: SyncBroker, r: redis.Redis, gk: GlobalKeys
) -> None:
    admin = ScheduleAdmin(broker.ops)
    empty = drive(admin.due(), broker.run)
    assert (empty.due, empty.next_due) == ([], None)
    store.upsert(every(60, "later"))
    store.upsert(every(60, "now"))
    store.upsert(every(60, "paused"))
    store.set_paused("paused", True)
    store.upsert(every(60, "broken"))
    r.hset(gk.schedule("broken"), "spec", "{")
    now = redis_ms(r)
    r.zadd(gk.schedules, {"now": now - 5, "broken": now - 10, "gone": now - 20})
    read = drive(admin.due(), broker.run)
    assert [d.schedule.id for d in read.due] == ["now"]
    assert read.corrupt == ["broken"] and read.gone == ["gone"]
    assert read.next_due == now - 20 and now <= read.now
    assert broker.run(admin.forget("gone")) == -1 and r.zscore(gk.schedules, "gone") is None
    assert broker.run(admin.forget("now")) == 0  # a live schedule is never forgotten
    assert r.zscore(gk.schedules, "now") == now - 5
