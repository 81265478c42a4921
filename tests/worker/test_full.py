"""A worker on a Redis at maxmemory (policy noeviction): it keeps its leases, finishes what
it runs, claims and drains the queue, and never stops; producers are refused meanwhile,
and nothing is lost or run twice. On a private server each test makes full."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest

from conveyor import BrokerFullError, Conveyor, TaskContext
from conveyor.broker.keys import GlobalKeys
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer
from conveyor.worker.loop import periodically
from tests.broker.seed import scores
from tests.support.full import Private, private_setup
from tests.support.keyspace import dump
from tests.support.worker import running_worker, wait_until

log = logging.getLogger("conveyor.worker")


@pytest.fixture
def private(redis_server: RedisServer, settings: Settings) -> Iterator[Private]:
    """A server of this test alone; leases of 3 s, renewed every second, so a loaded
    machine does not lose one."""
    with private_setup(redis_server, settings.replace(lease_timeout=3.0)) as made:
        yield made


@pytest.fixture
async def app(private: Private) -> AsyncIterator[Conveyor]:
    """A Conveyor app on the private server."""
    application = Conveyor(settings=private.settings)
    yield application
    await application.aclose()
    application.close()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_a_running_task_keeps_its_lease_and_the_next_is_claimed_while_full(
    app: Conveyor, private: Private, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.worker")
    started, release = asyncio.Event(), asyncio.Event()
    ran: Counter[str] = Counter()

    @app.task
    async def hold(label: str) -> str:
        ran[label] += 1
        started.set()
        await release.wait()
        return label

    keys = GlobalKeys(private.settings.prefix).queue("default")
    first, second = hold.enqueue("first"), hold.enqueue("second")
    async with running_worker(app, concurrency=1):
        await wait_until(lambda: _true(started.is_set()), 10, "the first task to start")
        private.memory.fill()
        deadline = scores(private.r, keys.active)[first.id]

        async def renewed() -> bool:
            return scores(private.r, keys.active).get(first.id, 0) > deadline

        await wait_until(renewed, 10, "the lease to be renewed while Redis is full")

        async def refused() -> bool:
            return any(
                "refuses to refresh the worker's registration" in m for m in warnings(caplog)
            )

        await wait_until(refused, 10, "the heartbeat to see its registration refused")
        with pytest.raises(BrokerFullError, match="nothing was stored"):
            await hold.enqueue_async("third")
        started.clear()
        release.set()  # the first finishes; the second is claimed and runs, Redis still full
        assert await second.result_async(timeout=10) == "second"
        assert await first.result_async(timeout=10) == "first"
        assert private.memory.is_full()
        assert ran == {"first": 1, "second": 1}
    assert "lease of task" not in " ".join(warnings(caplog))  # no lease was lost


async def test_a_full_redis_is_filled_drained_and_takes_tasks_again(private: Private) -> None:
    """Enqueue until Redis refuses; nothing is half-written; a worker started on the full
    Redis runs every stored task exactly once; their records expire, memory comes back,
    and the next enqueue is stored and runs."""
    app = Conveyor(settings=private.settings.replace(succeeded_retention=0.2))
    ran: Counter[str] = Counter()

    @app.task
    async def job(blob: str, ctx: TaskContext) -> None:
        ran[ctx.task_id] += 1

    keys = GlobalKeys(private.settings.prefix).queue("default")
    stored = [job.enqueue("first").id]  # connections and scripts ready: they take memory
    # what the tasks take must outweigh what the worker's connections and scripts will
    private.memory.limit_above_use(2 * 2**20)
    try:
        with pytest.raises(BrokerFullError) as refused:
            for _ in range(100_000):
                stored.append(job.enqueue("x" * 4096).id)
        assert "nothing was stored" in str(refused.value) and len(stored) > 10
        state = dump(private.r, private.settings.prefix)
        records = {key.rsplit(":task:", 1)[1] for key in state if ":task:" in key}
        listed = {f"default:{e}" for e in state[keys.ready]}
        assert records == set(stored) == listed  # no record without an entry
        assert private.memory.room() < 64 * 1024  # a task's command took Redis over

        async with running_worker(app, concurrency=8):
            await wait_until(lambda: _true(len(ran) == len(stored)), 60, "the queue to drain")

            async def has_room() -> bool:
                return private.memory.room() > 2**20

            await wait_until(has_room, 60, "finished records to expire")
            last = await job.enqueue_async("y")
            await wait_until(lambda: _true(last.id in ran), 10, "the last task to run")
        assert ran == Counter({task_id: 1 for task_id in [*stored, last.id]})
        assert scores(private.r, keys.pending) == scores(private.r, keys.active) == {}
        assert private.r.llen(keys.ready) == 0
    finally:
        await app.aclose()
        app.close()


async def test_a_periodic_step_refused_while_full_keeps_its_pace(
    app: Conveyor, private: Private, caplog: pytest.LogCaptureFixture
) -> None:
    """A step that Redis refuses for lack of memory (the reaper taking a free role, here)
    is tried again at its own pace, not after the outage back-off, and logged once."""
    caplog.set_level(logging.INFO, logger="conveyor.worker")
    broker = app.async_broker()
    stop = asyncio.Event()
    taken: list[bool] = []

    async def step() -> float:
        if len(taken) == 1:
            private.memory.fill()
        if len(taken) == 5:
            private.memory.free()
        taken.append(False)
        await broker.run(broker.ops.lead("w1", 0))  # gives the role up: a DEL goes through
        taken[-1] = await broker.run(broker.ops.lead("w1", 1.0))  # a SET: refused while full
        if len(taken) == 7:
            stop.set()
        return 0.0

    await asyncio.wait_for(periodically("reaper", step, stop, log), 60)
    assert taken == [True, False, False, False, False, True, True]
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reaper:")]
    assert len(said) == 2, said  # once when Redis filled up, once when it had room again
    assert "Redis is full" in said[0] and "nothing was stored" in said[0]
    assert said[0].endswith("trying again every 0.0s")
    assert said[1] == "reaper: Redis accepts writes again"


async def _true(value: bool) -> bool:
    return value
