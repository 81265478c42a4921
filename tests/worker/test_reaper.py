"""The Reaper: a worker with no connection left in Redis is dead and its tasks come back at
once; a live worker (idle, stopped, or whose connections were dropped) keeps its leases;
a restarted Redis is given time for workers to reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis

from conveyor import Conveyor, TaskState
from conveyor.broker.async_broker import AsyncBroker
from conveyor.broker.keys import worker_connection_name
from conveyor.broker.ops import Survey
from conveyor.broker.records import ClaimedTask
from conveyor.broker.transport import AsyncTransport
from conveyor.settings import Settings
from conveyor.worker import reaper as reaping
from conveyor.worker.presence import Presence
from conveyor.worker.reaper import ABSENCE, SURVEY_INTERVAL, Reaper
from tests.support.worker import LOAD_SLACK, wait_until

#: Surveys that span several absence windows: a reaper that would reap, has.
SURVEYS_PAST_ABSENCE = 3 * round(ABSENCE / SURVEY_INTERVAL) + 2


class FakeWorker:
    """The Redis side of a worker, as the reaper sees it: a registration, its leases, and
    connections named after it (real ones; "dying" closes them, as the kernel would)."""

    def __init__(self, settings: Settings, worker_id: str) -> None:
        self.id = worker_id
        transport = AsyncTransport(settings, name=worker_connection_name(worker_id))
        self.broker = AsyncBroker(settings, transport)

    async def register(self) -> None:
        info = f'{{"id": "{self.id}", "queues": ["default"]}}'.encode()
        await self.broker.run(
            self.broker.ops.register_worker(self.id, info, int(time.time() * 1000))
        )

    async def claim(self) -> ClaimedTask:
        [task] = (await self.broker.run(self.broker.ops.claim("default", 1, self.id))).tasks
        return task

    async def die(self) -> None:
        await self.broker.close()


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[FakeWorker]:
    worker = FakeWorker(settings, "w1")
    await worker.register()
    yield worker
    await worker.die()


@contextlib.asynccontextmanager
async def reaping_with(reaper: Reaper) -> AsyncIterator[Reaper]:
    stop = asyncio.Event()
    job = asyncio.create_task(reaper.run(stop))
    try:
        yield reaper
    finally:
        stop.set()
        await asyncio.wait_for(job, 10)


async def surveys_after(reaper: Reaper, count: int) -> None:
    """Wait until `reaper` made `count` more surveys."""
    target = reaper.surveys + count
    timeout = count * SURVEY_INTERVAL + LOAD_SLACK

    async def done() -> bool:
        return reaper.surveys >= target

    await wait_until(done, timeout, f"{count} surveys")


async def test_a_dead_workers_tasks_are_back_long_before_its_lease(
    app_with: Callable[..., Conveyor], worker: FakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    aapp = app_with(lease_timeout=60.0)
    handle = await aapp.enqueue_async("job")
    task = await worker.claim()
    caplog.set_level(logging.WARNING, logger="conveyor.worker")
    reaper = Reaper(aapp.async_broker(), "reaper", restart_grace=0)
    async with reaping_with(reaper):
        await surveys_after(reaper, 2)  # it saw the worker alive
        assert reaper.reaped == 0
        await worker.die()
        died = time.monotonic()

        async def pending() -> bool:
            record = await handle.record_async()
            return record is not None and record.state == TaskState.PENDING

        await wait_until(pending, ABSENCE + LOAD_SLACK, "the task back in pending")
        taken_back_in = time.monotonic() - died
    record = await handle.record_async()
    assert record is not None and record.crashes == 1 and record.worker == "w1"
    assert reaper.reaped == 1 and task.id == handle.id
    assert await aapp.async_inspector().workers() == []  # forgotten
    assert "worker w1 is gone" in caplog.text and "1 of its tasks back to pending" in caplog.text
    # well within a lease of 60 s: the absence window, plus a survey or two
    assert taken_back_in < 60.0 / 4


async def test_a_live_workers_leases_stay_however_long_it_is_silent(
    aapp: Conveyor, worker: FakeWorker
) -> None:
    """A stopped process (SIGSTOP) or one stuck holding the GIL sends nothing, but its
    connections stay open, and so do its leases."""
    await aapp.enqueue_async("job")
    task = await worker.claim()
    reaper = Reaper(aapp.async_broker(), "reaper", restart_grace=0)
    async with reaping_with(reaper):
        await surveys_after(reaper, SURVEYS_PAST_ABSENCE)
    assert reaper.reaped == 0
    record = await aapp.async_inspector().task(task.id)
    assert record is not None and record.state == TaskState.ACTIVE and record.token == task.token


async def test_dropped_connections_of_a_live_worker_are_reopened_before_it_is_judged(
    aapp: Conveyor, worker: FakeWorker, r: redis.Redis
) -> None:
    """A proxy or a Redis `timeout` drops a busy worker's connections: its presence
    connection is open again at once, and nothing is taken from it."""
    await aapp.enqueue_async("job")
    task = await worker.claim()
    stop = asyncio.Event()
    presence = asyncio.create_task(Presence(worker.broker, worker.id).run(stop))
    name = worker_connection_name(worker.id)

    def connected() -> list[str]:
        return [c["id"] for c in r.client_list() if c["name"].startswith(name)]

    async def present() -> bool:
        return any(c["name"] == f"{name}:presence" for c in r.client_list())

    reaper = Reaper(aapp.async_broker(), "reaper", restart_grace=0)
    try:
        await wait_until(present, LOAD_SLACK, "the presence connection")
        async with reaping_with(reaper):
            for _ in range(3):
                killed = connected()
                for client_id in killed:
                    r.client_kill_filter(_id=client_id)
                assert killed and not set(killed) & set(connected())
                await wait_until(present, LOAD_SLACK, "the presence connection again")
                await surveys_after(reaper, SURVEYS_PAST_ABSENCE)
    finally:
        stop.set()
        await asyncio.wait_for(presence, 10)
    assert reaper.reaped == 0
    record = await aapp.async_inspector().task(task.id)
    assert record is not None and record.state == TaskState.ACTIVE and record.crashes == 0


async def test_a_worker_that_beats_without_a_connection_is_not_judged(aapp: Conveyor) -> None:
    """The heartbeat moving is proof of life, even with no connection seen (a connection
    opened and closed between two surveys)."""
    reaper = Reaper(aapp.async_broker(), "reaper", restart_grace=0)
    beats, start = [1000.0], 100.0
    for n in range(20):
        beats.append(beats[-1] + 10)
        survey = Survey({"w1": beats[-1]}, set(), "server", 3600.0)
        assert reaper.judge(survey, start + n * ABSENCE) == []
    survey = Survey({"w1": beats[-1]}, set(), "server", 3600.0)
    assert reaper.judge(survey, start + 20 * ABSENCE) == ["w1"]  # a full window, no beat


@pytest.mark.parametrize(
    "gap", [reaping.MAX_SURVEY_GAP * 1.5, reaping.MAX_SURVEY_GAP * 40], ids=["gap", "long-gap"]
)
async def test_absence_must_be_watched_without_a_gap(aapp: Conveyor, gap: float) -> None:
    """A reaper that could not survey for a while (it lost the role, or its own process
    stalled) does not know the worker was absent all along: it starts over."""
    reaper = Reaper(aapp.async_broker(), "reaper", restart_grace=0)
    absent = Survey({"w1": 1000.0}, set(), "server", 3600.0)
    assert reaper.judge(absent, 100.0) == []
    assert reaper.judge(absent, 100.0 + gap) == []
    assert reaper.judge(absent, 100.0 + gap + ABSENCE) == ["w1"]


async def test_a_restarted_or_replaced_redis_gets_a_grace_period(aapp: Conveyor) -> None:
    """Every connection is new after a restart or a failover; workers get `restart_grace`
    to reconnect before an absence counts."""
    reaper = Reaper(aapp.async_broker(), "reaper", restart_grace=10.0)
    t = 100.0

    def judge(server: str, uptime: float, at: float) -> list[str]:
        return reaper.judge(Survey({"w1": 1000.0}, set(), server, uptime), at)

    # a young Redis: nothing counts until it has run restart_grace
    for step in range(40):
        assert judge("first", step * SURVEY_INTERVAL, t + step * SURVEY_INTERVAL) == []
    t += 40 * SURVEY_INTERVAL
    assert judge("first", 10.0, t) == []
    assert judge("first", 10.0 + ABSENCE, t + ABSENCE) == ["w1"]
    # another Redis (a Sentinel failover) that has run for long: grace from when it is seen
    for step in range(40):
        now = t + 1 + step * SURVEY_INTERVAL
        assert judge("second", 3600.0 + step, now) == []
    assert judge("second", 3700.0, t + 1 + 10.0 + SURVEY_INTERVAL) == []
    assert judge("second", 3700.0, t + 1 + 10.0 + SURVEY_INTERVAL + ABSENCE) == ["w1"]


async def test_one_reaper_at_a_time_surveys(aapp: Conveyor) -> None:
    first = Reaper(aapp.async_broker(), "first", restart_grace=0)
    second = Reaper(AsyncBroker(aapp.settings), "second", restart_grace=0)
    try:
        async with reaping_with(first):
            await surveys_after(first, 2)
            async with reaping_with(second):
                await surveys_after(first, 8)
            assert second.surveys == 0
        # the first gave the role up on stopping: the second takes it at its next try
        async with reaping_with(second):
            await surveys_after(second, 1)
    finally:
        await second.broker.close()


async def test_a_reaper_refused_client_list_stands_down(
    settings: Settings, r: redis.Redis, worker: FakeWorker, caplog: pytest.LogCaptureFixture
) -> None:
    """Where an ACL forbids CLIENT LIST, leases run out as before, and the log says so."""
    user = f"no-client-{settings.prefix}"
    # CLIENT with only what a connection needs (Redis 6.2 cannot deny one subcommand)
    r.acl_setuser(
        user,
        enabled=True,
        passwords=["+secret"],
        keys=["*"],
        commands=["+@all", "-client", "+client|setname", "+client|id"],
    )
    try:
        url = settings.redis_url.replace("redis://", f"redis://{user}:secret@")
        broker = AsyncBroker(settings.replace(redis_url=url))
        reaper = Reaper(broker, "reaper", restart_grace=0)
        caplog.set_level(logging.WARNING, logger="conveyor.worker")
        assert await reaper.step() == reaping.STAND_DOWN
        assert "cannot survey the workers, their leases will run out" in caplog.text
        assert "NOPERM" in caplog.text or "permission" in caplog.text
        await broker.close()
    finally:
        r.acl_deluser(user)
