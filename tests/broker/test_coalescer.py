"""Concurrent producer operations of one loop share round trips, and fail one by one."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from conveyor import BrokerUnavailableError, Conveyor, TaskState
from conveyor.broker.coalescer import BATCH, IN_FLIGHT
from conveyor.broker.keys import GlobalKeys
from conveyor.broker.scripts import Call
from conveyor.settings import Settings
from conveyor.tools.embedded import free_port


@dataclass
class Sent:
    """What this test's app sent to Redis, one list of calls per round trip.

    Counted at the transport's seam (`AsyncTransport._send`, one pipeline or one command
    per call) rather than read from Redis' server-wide counters, which every other
    connection to the server moves too.
    """

    trips: list[list[Call]] = field(default_factory=list)

    def script_calls(self) -> int:
        """EVALSHA calls sent so far."""
        return sum(call.args[0] == "EVALSHA" for trip in self.trips for call in trip)


@pytest.fixture
async def sent(aapp: Conveyor, monkeypatch: pytest.MonkeyPatch) -> Sent:
    """Records every round trip the app's asyncio transport (of this loop) makes."""
    transport = aapp.async_broker().transport
    send = transport._send
    log = Sent()

    async def recorded(calls: Sequence[Call]) -> list[Any]:
        log.trips.append(list(calls))
        return await send(calls)

    monkeypatch.setattr(transport, "_send", recorded)
    return log


async def test_concurrent_enqueues_share_round_trips(aapp: Conveyor, sent: Sent) -> None:
    # connect (a connection per pipeline in flight), load the script: not what is measured
    await asyncio.gather(*(aapp.enqueue_async("warm.up") for _ in range(IN_FLIGHT * BATCH)))
    sent.trips.clear()
    handles = await asyncio.gather(*(aapp.enqueue_async("t", i) for i in range(100)))
    assert len({h.id for h in handles}) == 100
    assert all(h.enqueued_state is TaskState.PENDING for h in handles)
    # the 100 queue up together and go in pipelines of BATCH: 4 round trips, each one
    # script call for the callers it carries
    assert len(sent.trips) == math.ceil(100 / BATCH), sent.trips
    assert sent.script_calls() == len(sent.trips)
    records = await asyncio.gather(*(h.record_async() for h in handles))
    assert [rec.args for rec in records if rec] == [[i] for i in range(100)]


async def test_waiting_enqueues_to_one_queue_run_as_one_script_call(
    aapp: Conveyor, sent: Sent
) -> None:
    await aapp.enqueue_async("warm.up")
    sent.trips.clear()
    # callers that queue up together (of 1, 2 or 3 tasks each) share one script call
    batches = [[aapp.message("t", i, n) for n in range(i % 3 + 1)] for i in range(30)]
    results = await asyncio.gather(*(aapp.enqueue_many_async(b) for b in batches))
    assert sent.script_calls() <= 2  # one, or two if the first went alone
    for batch, handles in zip(batches, results, strict=True):
        assert len(handles) == len(batch)
        records = [await h.record_async() for h in handles]
        assert [rec.args for rec in records if rec] == [list(m.args) for m in batch]


async def test_merged_callers_sharing_an_idempotency_key_get_one_task(aapp: Conveyor) -> None:
    await aapp.enqueue_async("warm.up")
    handles = await asyncio.gather(
        *(aapp.enqueue_async("t", i, idempotency_key="order-7") for i in range(5))
    )
    assert len({h.id for h in handles}) == 1
    assert [h.replayed for h in handles] == [False, True, True, True, True]


async def test_an_enqueue_spanning_queues_is_not_merged_with_one_queue(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    await aapp.enqueue_async("warm.up")
    await aapp.enqueue_async("warm.up", queue="broken")
    r.set(GlobalKeys(prefix).queue("broken").ready, "not a list")
    spanning = [aapp.message("t", 0), aapp.message("t", 1, queue="broken")]
    results = await asyncio.gather(
        aapp.enqueue_async("t", "one queue"),
        aapp.enqueue_many_async(spanning),
        aapp.enqueue_async("t", "one queue too"),
        aapp.enqueue_async("t", "one queue again"),
        return_exceptions=True,
    )
    assert isinstance(results[1], redis.ResponseError) and "WRONGTYPE" in str(results[1])
    assert all(not isinstance(h, BaseException) for i, h in enumerate(results) if i != 1)


async def test_an_error_reply_fails_only_its_own_operation(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    await aapp.enqueue_async("warm.up")
    r.set(GlobalKeys(prefix).queue("broken").ready, "not a list")
    results = await asyncio.gather(
        aapp.enqueue_async("t", 1),
        aapp.enqueue_async("t", 2, queue="broken"),
        aapp.enqueue_async("t", 3),
        return_exceptions=True,
    )
    assert isinstance(results[1], redis.ResponseError) and "WRONGTYPE" in str(results[1])
    good = [h for h in results if not isinstance(h, BaseException)]
    assert len(good) == 2
    states = [(await h.record_async()).state for h in good]  # type: ignore[union-attr]
    assert states == [TaskState.PENDING, TaskState.PENDING]


async def test_an_unreachable_redis_fails_every_caller_of_the_round_trip(
    settings: Settings,
) -> None:
    app = Conveyor(settings=settings.replace(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        results = await asyncio.gather(
            *(app.enqueue_async("t", i) for i in range(10)), return_exceptions=True
        )
        assert all(isinstance(e, BrokerUnavailableError) for e in results), results
    finally:
        await app.aclose()


async def test_a_caller_cancelled_before_its_turn_sends_nothing(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    await aapp.enqueue_async("warm.up", queue="other")
    first = asyncio.ensure_future(aapp.enqueue_async("t", 1))
    await asyncio.sleep(0)  # the first is in flight now; the second will wait its turn
    second = asyncio.ensure_future(aapp.enqueue_async("t", 2))
    await asyncio.sleep(0)
    second.cancel()
    handle = await first
    with pytest.raises(asyncio.CancelledError):
        await second
    pending = r.lrange(GlobalKeys(prefix).queue("default").ready, 0, -1)
    assert pending == [handle.id.rpartition(":")[2].encode()]


async def test_reads_and_cancels_share_the_path(aapp: Conveyor) -> None:
    handles = await asyncio.gather(*(aapp.enqueue_async("t", i) for i in range(5)))
    cancelled, records = await asyncio.gather(
        asyncio.gather(*(aapp.cancel_async(h.id) for h in handles[:2])),
        asyncio.gather(*(aapp.get_record_async(h.id) for h in handles[2:])),
    )
    assert cancelled == [True, True]
    assert [rec.state for rec in records if rec] == [TaskState.PENDING] * 3
