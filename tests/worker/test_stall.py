"""A Redis that stops answering (SIGSTOP: connections stay open, replies never come).

redis-py's default of retrying a call many times turned a 1 s socket timeout into a 15 s
stall; Conveyor bounds every call so a stall never outlasts a lease. A cross-cutting
behaviour (the transport's retry policy, every component's backoff), tested end to end in
a file of its own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from conveyor import BrokerUnavailableError, Conveyor, TaskState
from conveyor.settings import Settings
from conveyor.tools.embedded import RedisServer
from conveyor.worker.outage import MAX_OUTAGE_BACKOFF
from tests.support.worker import LOAD_SLACK, running_worker, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def stallable(redis_server: RedisServer) -> Iterator[RedisServer]:
    """A private server this test may freeze without stalling the rest of the session."""
    server = RedisServer(redis_server.binary).start()
    yield server
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGCONT)
    server.cleanup()


def freeze(server: RedisServer, frozen: bool) -> None:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP if frozen else signal.SIGCONT)


def test_a_producer_call_is_bounded_by_a_fraction_of_the_lease(stallable: RedisServer) -> None:
    # a lease of 6 s: each try times out after 1.5 s, so the bound below leaves about 2.5 s
    # that a loaded machine may add (a lease of 2 s left it under one)
    settings = Settings(redis_url=stallable.url, prefix="stall", lease_timeout=6.0)
    app = Conveyor(settings=settings)
    app.enqueue("warm")  # the connection is open before the freeze
    freeze(stallable, True)
    try:
        started = time.monotonic()
        with pytest.raises(BrokerUnavailableError):
            app.enqueue("t")
        elapsed = time.monotonic() - started
    finally:
        freeze(stallable, False)
    # one attempt and one retry of call_timeout (lease/4) each, plus the backoff (<= 0.5 s)
    assert elapsed < settings.lease_timeout, elapsed
    assert app.enqueue("after").status() == TaskState.PENDING
    app.close()


async def test_a_worker_rides_out_a_stall_longer_than_its_lease(stallable: RedisServer) -> None:
    settings = Settings(
        redis_url=stallable.url, prefix="stall", lease_timeout=1.0, retry_backoff_base=0.01
    )
    app = Conveyor(settings=settings)
    done: list[int] = []

    @app.task
    async def note(i: int) -> None:
        done.append(i)

    async with running_worker(app):
        assert await note.enqueue(0).result_async(timeout=10) is None
        freeze(stallable, True)
        await asyncio.sleep(3 * settings.lease_timeout)  # the worker's calls time out meanwhile
        freeze(stallable, False)
        handle = await note.enqueue_async(1)

        async def finished() -> bool:
            return (await handle.record_async()) is not None and 1 in done

        # the fetcher's outage backoff is at most MAX_OUTAGE_BACKOFF; the rest is for load
        await wait_until(finished, MAX_OUTAGE_BACKOFF + LOAD_SLACK, "the worker to resume")
    await app.aclose()
    app.close()
    assert done == [0, 1]
