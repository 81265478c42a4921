"""The Periodic component: declares the code's schedules, fires each tick once however
many workers run, applies the misfire policies and jitter, and skips what it cannot fire."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from conveyor import Conveyor, TaskContext, TaskState
from conveyor.broker.keys import GlobalKeys
from conveyor.broker.schedules import ScheduleAdmin
from conveyor.broker.steps import drive
from conveyor.model import TaskRecord
from conveyor.schedule import Schedule
from conveyor.schedules import schedule_message
from conveyor.tools.embedded import RedisServer
from conveyor.worker.firing import MISFIRE_GRACE_MS
from conveyor.worker.periodic import MAX_OFFSET, MAX_SLEEP, Periodic
from tests.broker.seed import redis_ms
from tests.support.keyspace import dump
from tests.support.worker import LOAD_SLACK, running_worker, wait_until


def tasks_of(r: redis.Redis, prefix: str, queue: str = "default") -> list[TaskRecord]:
    """Every task record of `queue`, in any state."""
    base = GlobalKeys(prefix).queue(queue).task_prefix
    records = []
    for key in r.scan_iter(match=f"{base}*", count=1000):
        task_id = key.decode()[len(base) :]
        records.append(TaskRecord.from_hash(task_id, r.hgetall(key)))  # type: ignore[arg-type]
    return records


def ticks_of(records: list[TaskRecord], schedule_id: str = "s") -> list[int]:
    """The ticks the tasks were enqueued for, from their idempotency keys."""
    prefix = f"schedule:{schedule_id}:"
    return sorted(int(str(r.idempotency_key)[len(prefix) :]) for r in records)


def seed(app: Conveyor, r: redis.Redis, schedule: Schedule, cursor: int) -> None:
    """Store `schedule` as if its last look had been at `cursor` (no worker since)."""
    app.inspector.schedules.upsert(schedule)
    keys = GlobalKeys(app.settings.prefix)
    r.hset(keys.schedule(schedule.id), "cursor", cursor)
    r.zadd(keys.schedules, {schedule.id: schedule.timing.next_after(cursor)})


async def test_two_workers_fire_each_tick_of_a_declared_schedule_once(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    ran: list[str] = []

    @aapp.periodic(id="s", every=1)
    @aapp.task
    async def beat(ctx: TaskContext) -> None:
        ran.append(ctx.task_id)

    async with running_worker(aapp, worker_id="w1"), running_worker(aapp, worker_id="w2"):
        await wait_until(lambda: _ready(len(ran) >= 3), 10, "three ticks to run")
    info = aapp.schedules.get("s")
    assert info.origin == "code" and info.runs >= 3
    records = tasks_of(r, prefix)
    ticks = ticks_of(records)
    assert len(ticks) == len(set(ticks)) == len(records)  # one task per tick
    assert all(b - a == 1000 for a, b in itertools.pairwise(ticks))  # none missed
    assert Counter(ran).most_common(1)[0][1] == 1
    assert info.last_task in {r.id for r in records}


async def _ready(value: bool) -> bool:
    return value


async def test_a_step_sleeps_until_the_next_tick_bounded(aapp: Conveyor, r: redis.Redis) -> None:
    periodic = Periodic(aapp, aapp.async_broker(), offset=0.05)
    assert await periodic.step() == MAX_SLEEP  # no schedule at all
    aapp.inspector.schedules.upsert(Schedule.build("s", "job", every=3600))
    assert await periodic.step() == MAX_SLEEP  # an hour away: look again within a second
    aapp.inspector.schedules.upsert(Schedule.build("s", "job", every=1))
    wait = await periodic.step()
    if wait > 0:  # 0 when the tick came while upserting: it fired
        assert 0.05 <= wait <= 1.05
    assert 0 <= Periodic(aapp, aapp.async_broker()).offset <= MAX_OFFSET


async def test_declaring_upserts_once_with_origin_code(aapp: Conveyor, r: redis.Redis) -> None:
    schedule = Schedule.build("s", "job", every=3600)
    periodic = Periodic(aapp, aapp.async_broker(), [schedule])
    await periodic.step()
    await periodic.step()
    [info] = aapp.schedules.list()
    assert info.origin == "code" and info.schedule == schedule
    assert info.declared_at is not None and info.to_json()["declared_at"].endswith("Z")


@pytest.mark.parametrize(
    ("misfire", "expected"),
    [("skip", lambda missed: []), ("once", lambda missed: missed[-1:]), ("all", lambda m: m)],
)
async def test_missed_ticks_follow_the_policy(
    aapp: Conveyor, r: redis.Redis, prefix: str, misfire: str, expected: Any
) -> None:
    # an hourly schedule whose last tick was two minutes ago (well past the grace), and
    # no worker since the tick five hours before it
    now = redis_ms(r)
    minute = (datetime.fromtimestamp(now / 1000, UTC).minute - 2) % 60
    schedule = Schedule.build("s", "job", cron=f"{minute} * * * *", misfire=misfire)
    [latest] = schedule.timing.latest(now - 3_600_000, now, 1)
    assert now - latest > MISFIRE_GRACE_MS
    cursor = latest - 5 * 3_600_000
    seed(aapp, r, schedule, cursor)
    missed = schedule.timing.latest(cursor, now, 10)
    assert len(missed) == 5 and missed[-1] == latest
    await Periodic(aapp, aapp.async_broker()).step()
    assert ticks_of(tasks_of(r, prefix)) == expected(missed)
    info = aapp.schedules.get("s")
    assert info.next_run is not None and info.next_run.timestamp() * 1000 == latest + 3_600_000
    assert aapp.schedules.get("s").runs == len(ticks_of(tasks_of(r, prefix)))


async def test_a_tick_enqueued_by_a_worker_that_died_is_not_enqueued_again(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    schedule = Schedule.build("s", "job", every=1, misfire="all")
    now = redis_ms(r)
    seed(aapp, r, schedule, now // 1000 * 1000 - 3000)
    # a worker enqueued the due ticks, then died before its check-and-set
    due = schedule.timing.latest(now // 1000 * 1000 - 3000, now, 10)
    periodic = Periodic(aapp, aapp.async_broker())
    first = aapp.enqueue_many([schedule_message(schedule, aapp.tasks, tick) for tick in due])
    await periodic.step()
    records = tasks_of(r, prefix)
    ticks = ticks_of(records)
    assert len(ticks) == len(set(ticks)) and set(due) <= set(ticks)
    assert {h.id for h in first} <= {rec.id for rec in records}


async def test_a_unique_periodic_task_skips_its_ticks_while_the_last_one_is_live(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    @aapp.task(name="solo", unique=True)
    def solo() -> None: ...

    schedule = Schedule.build("s", "solo", every=1, misfire="all")
    now = redis_ms(r)
    seed(aapp, r, schedule, now // 1000 * 1000 - 3000)
    await Periodic(aapp, aapp.async_broker()).step()
    [record] = tasks_of(r, prefix)  # three ticks due: the later two found the first live
    assert record.name == "solo"
    aapp.schedules.upsert("s", "solo", every=1)
    run = aapp.schedules.run_now("s")  # the same flow control as the ticks
    assert run.replayed and run.id == record.id


async def test_jitter_delays_each_tick_by_its_fixed_amount(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    schedule = Schedule.build("s", "job", every=1, jitter=60, misfire="all")
    seed(aapp, r, schedule, redis_ms(r) - 5000)
    await Periodic(aapp, aapp.async_broker()).step()
    records = tasks_of(r, prefix)
    assert len(records) >= 4
    for record in records:
        assert record.state == TaskState.SCHEDULED and record.due_at is not None
        tick = ticks_of([record])[0]
        delay = schedule.tick_delay(tick)
        assert delay is not None and 0 <= delay <= 60
        enqueued = record.enqueued_at.timestamp() if record.enqueued_at else 0
        assert abs(record.due_at.timestamp() - enqueued - delay) < 1.0


async def test_paused_corrupt_and_removed_schedules_do_not_stop_the_others(
    aapp: Conveyor, r: redis.Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = GlobalKeys(prefix)
    now = redis_ms(r)
    for schedule_id in ("paused", "ok", "broken"):
        seed(aapp, r, Schedule.build(schedule_id, "job", every=1, misfire="once"), now - 2000)
    aapp.schedules.pause("paused")
    r.hset(keys.schedule("broken"), "spec", "{")
    r.zadd(keys.schedules, {"removed": now - 5000})
    periodic = Periodic(aapp, aapp.async_broker())
    with caplog.at_level(logging.ERROR, "conveyor.worker"):
        await periodic.step()
        await periodic.step()
    assert ticks_of(tasks_of(r, prefix), "ok") and len(tasks_of(r, prefix)) == 1
    assert r.zscore(keys.schedules, "removed") is None
    assert [m for m in caplog.messages if "broken" in m] == [
        "schedule broken cannot be decoded; it is not fired (see conveyor fsck)"
    ]  # once, however many steps
    assert dump(r, prefix)[keys.schedules]["paused"] == float("inf")


async def test_a_schedule_removed_while_firing_is_not_written_back(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    schedule = Schedule.build("s", "job", every=1, misfire="once")
    seed(aapp, r, schedule, redis_ms(r) - 2000)
    periodic = Periodic(aapp, aapp.async_broker())
    admin = ScheduleAdmin(aapp.sync_broker().ops)
    read = drive(admin.due(), aapp.sync_broker().run)
    aapp.schedules.remove("s")
    await periodic.fire(read)
    keys = GlobalKeys(prefix)
    assert r.exists(keys.schedule("s"), keys.schedules) == 0
    assert len(tasks_of(r, prefix)) == 1  # the tick it had read was still enqueued


async def test_a_redis_outage_is_survived_and_a_data_loss_redeclared(
    aapp: Conveyor, r: redis.Redis, prefix: str, outage: RedisServer
) -> None:
    schedule = Schedule.build("s", "job", every=1)
    periodic = Periodic(aapp, aapp.async_broker(), [schedule], redeclare_every=0.5)
    stop = asyncio.Event()
    job = asyncio.create_task(periodic.run(stop))

    async def fired() -> bool:
        return bool(tasks_of(r, prefix))

    try:
        await wait_until(fired, 10, "a tick")
        outage.stop()
        await asyncio.sleep(1.0)  # every step fails meanwhile, and backs off
        assert not job.done(), "the outage ended the component"
        outage.start()  # persistence is off: the schedule and its tasks are gone
        assert not r.exists(GlobalKeys(prefix).schedule("s"))
        await wait_until(fired, 10 + LOAD_SLACK, "a tick after the restart")
        assert aapp.schedules.get("s").origin == "code"
    finally:
        stop.set()
        await asyncio.wait_for(job, 10)
