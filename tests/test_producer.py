"""One contract suite for the sync and the asyncio producer APIs, against a real Redis."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from conveyor import (
    BrokerUnavailableError,
    Conveyor,
    TaskConflictError,
    TaskFailedError,
    TaskNotFoundError,
    TaskState,
)
from conveyor.errors import (
    ConfigurationError,
    InvalidNameError,
    ResultTimeoutError,
    SerializationError,
)
from conveyor.producer import Message, TaskHandle
from conveyor.tools.embedded import free_port
from tests.support.keyspace import dump, entry


class Producer:
    """The same calls through either API."""

    def __init__(self, app: Conveyor, mode: str) -> None:
        self.app, self.mode = app, mode

    async def enqueue(self, name: str, *args: Any, **kwargs: Any) -> TaskHandle:
        if self.mode == "async":
            return await self.app.enqueue_async(name, *args, **kwargs)
        return self.app.enqueue(name, *args, **kwargs)

    async def enqueue_many(self, messages: list[Message]) -> list[TaskHandle]:
        if self.mode == "async":
            return await self.app.enqueue_many_async(messages)
        return self.app.enqueue_many(messages)

    async def state(self, handle: TaskHandle) -> TaskState | None:
        record = await handle.record_async() if self.mode == "async" else handle.record()
        return record.state if record else None

    async def cancel(self, task_id: str) -> bool:
        if self.mode == "async":
            return await self.app.cancel_async(task_id)
        return self.app.cancel(task_id)

    async def result(self, handle: TaskHandle, timeout: float) -> Any:
        if self.mode == "async":
            return await handle.result_async(timeout=timeout)
        return handle.result(timeout=timeout)


@pytest.fixture(params=["sync", "async"])
def producer(aapp: Conveyor, request: pytest.FixtureRequest) -> Producer:
    return Producer(aapp, request.param)


async def test_enqueue_stores_a_pending_record(
    producer: Producer, r: redis.Redis, prefix: str
) -> None:
    handle = await producer.enqueue("send", "a@b.c", subject="hi", queue="emails")
    assert handle.id.startswith("emails:") and not handle.replayed
    record = await handle.record_async()
    assert record is not None
    assert (record.name, record.queue, record.state) == ("send", "emails", TaskState.PENDING)
    assert (record.args, record.kwargs, record.attempts) == (["a@b.c"], {"subject": "hi"}, 0)
    assert record.enqueued_at is not None
    keys = dump(r, prefix)
    assert entry(handle.id) in keys[f"{prefix}:{{emails}}:ready"]
    assert keys[f"{prefix}:queues"] == ["emails"]


async def test_payload_arrives_as_one_argument(producer: Producer) -> None:
    handle = await producer.enqueue("email-notification", payload={"to": "x"})
    record = await handle.record_async()
    assert record is not None and record.args == [{"to": "x"}] and record.kwargs == {}


async def test_delay_and_eta_schedule_the_task(
    producer: Producer, r: redis.Redis, prefix: str
) -> None:
    delayed = await producer.enqueue("later", delay=60)
    at = await producer.enqueue("at", eta=datetime.now(UTC) + timedelta(seconds=120))
    scheduled = dump(r, prefix)[f"{prefix}:{{default}}:scheduled"]
    assert await producer.state(delayed) == TaskState.SCHEDULED
    assert await producer.state(at) == TaskState.SCHEDULED
    assert 59_000 < scheduled[at.id] - scheduled[delayed.id] < 61_000


async def test_enqueue_many_spans_queues_in_order(producer: Producer, app: Conveyor) -> None:
    messages = [app.message("t", i, queue=("a" if i % 2 else "b")) for i in range(2500)]
    handles = await producer.enqueue_many(messages)
    assert [h.id.split(":")[0] for h in handles] == [m.options.queue for m in messages]
    assert len({h.id for h in handles}) == 2500
    first = await handles[0].record_async()
    last = await handles[-1].record_async()
    assert first is not None and first.args == [0]
    assert last is not None and last.args == [2499]


async def test_idempotency_key_returns_the_first_task(
    producer: Producer, r: redis.Redis, prefix: str
) -> None:
    first = await producer.enqueue("charge", 10, idempotency_key="order-1")
    again = await producer.enqueue("charge", 10, idempotency_key="order-1")
    assert again.id == first.id and again.replayed and not first.replayed
    assert len(dump(r, prefix)[f"{prefix}:{{default}}:ready"]) == 1


async def test_cancel_pending_and_scheduled(producer: Producer) -> None:
    pending = await producer.enqueue("p")
    scheduled = await producer.enqueue("s", delay=30)
    assert await producer.cancel(pending.id) and await producer.cancel(scheduled.id)
    assert await producer.state(pending) == TaskState.CANCELLED
    with pytest.raises(TaskConflictError, match="cancelled"):
        await producer.cancel(pending.id)
    with pytest.raises(TaskNotFoundError):
        await producer.cancel("default:NOPE")


async def test_result_gives_up_after_its_timeout(producer: Producer) -> None:
    handle = await producer.enqueue("never-run")  # no worker serves it
    started = time.monotonic()
    with pytest.raises(ResultTimeoutError, match=f"task {handle.id} not finished after 0.3s"):
        await producer.result(handle, timeout=0.3)
    assert time.monotonic() - started >= 0.3  # it waited the whole timeout first
    assert await producer.state(handle) == TaskState.PENDING  # and changed nothing


async def test_result_of_a_task_that_did_not_succeed_raises_task_failed(
    producer: Producer,
) -> None:
    handle = await producer.enqueue("p")
    await producer.cancel(handle.id)
    with pytest.raises(TaskFailedError) as failed:
        await producer.result(handle, timeout=5)
    assert failed.value.task_id == handle.id and failed.value.state == TaskState.CANCELLED


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"queue": "bad{queue}"}, InvalidNameError),
        ({"queue": "a:b"}, InvalidNameError),
        ({"priority": 101}, ConfigurationError),
        ({"delay": -1}, ConfigurationError),
        ({"idempotency_key": ""}, ConfigurationError),
        ({"payload": object()}, SerializationError),
        ({"payload": {1: float("nan")}}, SerializationError),
    ],
)
async def test_bad_input_is_a_clear_error_and_stores_nothing(
    producer: Producer, r: redis.Redis, prefix: str, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await producer.enqueue("t", **kwargs)
    assert dump(r, prefix) == {}


async def test_invalid_task_name(producer: Producer) -> None:
    with pytest.raises(InvalidNameError):
        await producer.enqueue("no spaces allowed")


def test_a_producer_with_an_invalid_name_writes_nothing(
    app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    with pytest.raises(InvalidNameError):
        app.enqueue("job", queue="a:b")
    with pytest.raises(InvalidNameError):
        app.enqueue_many([app.message("job"), app.message("job", queue="{emails}")])
    with pytest.raises(InvalidNameError):
        app.enqueue("bad name")
    assert dump(r, prefix) == {}


async def test_redis_unreachable_raises_a_clear_error() -> None:
    app = Conveyor(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5)
    with pytest.raises(BrokerUnavailableError, match="unavailable"):
        app.enqueue("t")
    with pytest.raises(BrokerUnavailableError):
        await app.enqueue_async("t")
    await app.aclose()
    app.close()


def test_idempotency_is_atomic_under_concurrent_producers(
    app: Conveyor, r: redis.Redis, prefix: str
) -> None:
    ids: list[str] = []
    barrier = threading.Barrier(16)

    def produce() -> None:
        barrier.wait()
        ids.append(app.enqueue("charge", idempotency_key="same").id)

    threads = [threading.Thread(target=produce) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert dump(r, prefix)[f"{prefix}:{{default}}:ready"] == [entry(i) for i in ids[:1]]


# The first loop closes without `aclose()`: its sockets are only reclaimed by the GC.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_async_clients_are_per_event_loop(app: Conveyor) -> None:
    async def enqueue_and_close() -> tuple[TaskHandle, int]:
        handle = await app.enqueue_async("t")
        clients = len(app.producer._async)
        await app.aclose()
        return handle, clients

    first = asyncio.run(app.enqueue_async("t"))  # this loop ends without aclose()
    second, clients = asyncio.run(enqueue_and_close())  # must not reuse the old loop's client
    assert first.id != second.id
    assert clients == 1  # the closed loop's client was dropped
    gc.collect()  # reclaim the first loop's sockets here, where the warnings are expected
