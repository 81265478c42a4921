"""A Redis outage under a running worker: it logs, keeps running, and resumes afterwards.

A cross-cutting behaviour (every component backs off and retries, producers fail clearly),
so it has a file of its own rather than one per component. These tests stop the session's
shared redis-server and always restart it on the same port. Persistence is off, so
whatever was stored before the stop is gone afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from conveyor import BrokerUnavailableError, Conveyor, TaskState
from conveyor.tools.embedded import RedisServer
from conveyor.worker.outage import MAX_OUTAGE_BACKOFF
from conveyor.worker.runtime import Worker
from tests.support.worker import LOAD_SLACK, wait_all, wait_until


async def test_a_worker_survives_a_redis_outage_and_resumes(
    aapp: Conveyor, outage: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="conveyor.worker")

    @aapp.task
    async def echo(n: int, seconds: float = 0.0) -> int:
        await asyncio.sleep(seconds)
        return n

    worker = Worker(aapp)
    job = asyncio.create_task(worker.run())
    try:
        assert await echo.enqueue(1).result_async(timeout=10) == 1
        # running when Redis goes away: their outcomes cannot be written for a while
        in_flight = [echo.enqueue(n, seconds=0.5) for n in range(2, 5)]
        await wait_all(in_flight, TaskState.ACTIVE, 10, "the tasks to start")

        port = outage.port
        outage.stop()

        async def complained() -> bool:
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            return any("unavailable" in r.getMessage() for r in warnings)

        await wait_until(complained, 10, "the worker to log the outage")
        with pytest.raises(BrokerUnavailableError, match="unavailable"):
            echo.enqueue(99)
        with pytest.raises(BrokerUnavailableError, match="unavailable"):
            await echo.enqueue_async(99)
        await asyncio.sleep(1.0)  # a real outage: every component fails and backs off
        assert not job.done(), "the outage ended the worker"

        outage.start()
        assert outage.port == port
        restarted = time.monotonic()
        after = [echo.enqueue(n) for n in range(10, 15)]  # earlier data died with the server
        # back within the longest outage backoff, plus what a loaded machine adds; a
        # backoff that kept growing, or a component that gave up, would miss it
        resumed = MAX_OUTAGE_BACKOFF + LOAD_SLACK
        assert [await h.result_async(timeout=resumed) for h in after] == list(range(10, 15))
        took = time.monotonic() - restarted
        assert took < resumed, f"resumed {took:.1f}s after the restart"
        assert not job.done()
    finally:
        worker.stop()
        await asyncio.wait_for(job, 30)  # and it stops cleanly: no error escaped run()


def lines(caplog: pytest.LogCaptureFixture, text: str, level: int | None = None) -> list[str]:
    """The worker's log lines that contain `text` (at `level`, if given)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("conveyor.worker")
        and text in r.getMessage()
        and (level is None or r.levelno == level)
    ]


async def test_an_outage_is_one_line_when_redis_goes_and_one_when_it_is_back(
    aapp: Conveyor, outage: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Every component retries with back-off meanwhile; they once logged ~3 lines a second."""
    caplog.set_level(logging.INFO, logger="conveyor.worker")
    aapp.task(name="echo")(lambda n: n)
    where = f"127.0.0.1:{outage.port}"
    outage.stop()
    worker = Worker(aapp)
    job = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(2.5)  # a worker started against a dead Redis
        assert lines(caplog, "waiting for Redis at", logging.WARNING) == [
            line for line in lines(caplog, "", logging.WARNING)
        ]
        [waiting] = lines(caplog, "waiting for Redis at")
        assert where in waiting and "back-off" in waiting, waiting
        outage.start()
        resumed = MAX_OUTAGE_BACKOFF + LOAD_SLACK
        assert await aapp.enqueue("echo", 1).result_async(timeout=resumed) == 1
        [connected] = lines(caplog, "connected to Redis at")
        assert where in connected, connected

        outage.stop()  # and once connected, Redis goes away again
        await asyncio.sleep(2.5)
        [lost] = lines(caplog, "lost Redis at", logging.WARNING)
        assert where in lost, lost
        outage.start()
        assert await aapp.enqueue("echo", 2).result_async(timeout=resumed) == 2
        [back] = lines(caplog, "is back after", logging.WARNING)
        assert where in back, back
        warnings = lines(caplog, "", logging.WARNING)
        assert warnings == [waiting, lost, back], warnings
    finally:
        worker.stop()
        await asyncio.wait_for(job, 30)
