"""The executor: each kind of handler (async, thread, process) and each way a task can end
(success, retry, dead letter, failure, timeout, undeliverable, a dying pool process)."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

import pytest
import redis

from conveyor import Conveyor, Retry, TaskContext, TaskFailedError, TaskState
from conveyor.errors import SerializationError
from conveyor.options import ExecutorKind
from conveyor.producer import TaskHandle
from tests.support import handlers
from tests.support.worker import running_worker, wait_until


async def finished(handle: TaskHandle, timeout: float = 10.0) -> Any:
    """The record of `handle` once it reaches a terminal state."""

    async def done() -> bool:
        record = await handle.record_async()
        return record is not None and record.state.is_terminal

    await wait_until(done, timeout, f"task {handle.id} to finish")
    return await handle.record_async()


async def test_async_sync_and_process_handlers(aapp: Conveyor) -> None:
    @aapp.task
    async def hello(name: str) -> str:
        return f"hello {name}"

    @aapp.task
    def add(a: int, b: int) -> int:
        return a + b

    square = aapp.task(name="square", executor="process")(handlers.square)
    async with running_worker(aapp, processes=1):
        handles = [await hello.enqueue_async("ada"), add.enqueue(2, b=3), square.enqueue(12)]
        results = [await h.result_async(timeout=20) for h in handles]
    assert results == ["hello ada", 5, 144]
    record = await finished(handles[1])
    assert record.state == TaskState.SUCCEEDED and record.attempts == 1
    assert record.started_at and record.finished_at and record.worker


async def test_context_carries_attempt_and_a_growing_token(aapp: Conveyor) -> None:
    seen: list[tuple[int, int]] = []

    @aapp.task(max_retries=2)
    async def flaky(ctx: TaskContext) -> int:
        seen.append((ctx.attempt, ctx.token))
        if ctx.attempt < 3:
            raise Retry(delay=0)
        return ctx.token

    async with running_worker(aapp):
        assert await flaky.enqueue().result_async(timeout=10) == 3
    assert seen == [(1, 1), (2, 2), (3, 3)]


async def test_retries_then_dead_letter_with_the_error(aapp: Conveyor) -> None:
    calls = 0

    @aapp.task(max_retries=2)
    def always_fails() -> None:
        nonlocal calls
        calls += 1
        raise ValueError("broken input")

    async with running_worker(aapp):
        handle = always_fails.enqueue()
        record = await finished(handle)
    assert calls == 3
    assert (record.state, record.reason, record.failures) == (TaskState.DEAD, "error", 3)
    assert record.error["type"] == "ValueError" and record.error["message"] == "broken input"
    assert "raise ValueError" in record.error["traceback"]
    with pytest.raises(TaskFailedError, match="dead: ValueError: broken input"):
        handle.result(timeout=1)


async def test_retry_policy_per_exception(aapp: Conveyor) -> None:
    attempts: dict[str, int] = {"only": 0, "never": 0}

    @aapp.task(max_retries=5, retry_on=(ConnectionError,))
    def only_connection_errors(kind: str) -> None:
        attempts["only"] += 1
        raise (ConnectionError if attempts["only"] < 3 else KeyError)(kind)

    @aapp.task(max_retries=5, no_retry_on=(PermissionError,))
    def never_permission() -> None:
        attempts["never"] += 1
        raise PermissionError("denied")

    async with running_worker(aapp):
        first = await finished(only_connection_errors.enqueue("x"))
        second = await finished(never_permission.enqueue())
    assert attempts == {"only": 3, "never": 1}
    assert first.error["type"] == "KeyError" and second.error["type"] == "PermissionError"


async def test_retry_waits_its_backoff_in_the_scheduled_set(aapp: Conveyor) -> None:
    starts: list[float] = []

    @aapp.task(max_retries=1)
    async def later() -> None:
        starts.append(time.monotonic())
        if len(starts) == 1:
            raise Retry(delay=0.6)

    async with running_worker(aapp):
        record = await finished(later.enqueue())
    assert len(starts) == 2 and starts[1] - starts[0] >= 0.55
    # retry.lua stamped it due 0.6 s after its failure (only a retry stamps due_at: it was
    # enqueued without a delay) as it put it in the scheduled set, and the second attempt
    # was claimed no earlier, by Redis's clock; no poll has to catch the 0.6 s it waited
    assert record.enqueued_at and record.due_at and record.started_at
    assert record.due_at - record.enqueued_at >= timedelta(seconds=0.6)
    assert record.started_at >= record.due_at


async def test_without_dead_letter_the_task_ends_failed(aapp: Conveyor) -> None:
    @aapp.task(max_retries=0, dead_letter=False)
    def fails() -> None:
        raise RuntimeError("no")

    async with running_worker(aapp):
        record = await finished(fails.enqueue())
    assert record.state == TaskState.FAILED
    stats = await _dead_count(aapp, "default")
    assert stats == 0


async def _dead_count(app: Conveyor, queue: str) -> int:

    [stats] = await app.async_inspector().queue_stats([queue])
    return stats.dead


@pytest.mark.parametrize("executor", ["async", "thread", "process"])
async def test_timeout_fails_the_attempt_and_retries(aapp: Conveyor, executor: str) -> None:
    cut: list[float] = []  # one entry per attempt of the async handler cancelled mid-sleep

    if executor == "async":

        @aapp.task(name="slow", timeout=0.3, max_retries=1)
        async def slow(seconds: float) -> None:
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                cut.append(seconds)
                raise
    else:
        kind = cast(ExecutorKind, executor)
        aapp.task(name="slow", timeout=0.3, max_retries=1, executor=kind)(handlers.burn)

    async with running_worker(aapp, processes=1):
        record = await finished(aapp.enqueue("slow", 3.0), timeout=30)
        # stopped, not waited out (a thread cannot be stopped, only abandoned): each
        # coroutine was cancelled, and each child process killed before its attempt's
        # outcome was written (read before the worker's shutdown kills children anyway)
        children = multiprocessing.active_children()
    assert (record.state, record.reason, record.attempts) == (TaskState.DEAD, "timeout", 2)
    assert record.error["type"] == "TaskTimeoutError"
    assert cut == ([3.0, 3.0] if executor == "async" else [])
    if executor == "process":
        assert children == [], children


@pytest.mark.parametrize(
    ("name", "payload", "reason"),
    [
        ("nobody.handles.this", 1, "unknown task"),
        ("takes_two", 1, "bad arguments"),
    ],
)
async def test_undeliverable_tasks_are_dead_lettered_at_once(
    aapp: Conveyor, name: str, payload: Any, reason: str
) -> None:
    @aapp.task(name="takes_two")
    def takes_two(a: int, b: int) -> int:
        return a + b

    async with running_worker(aapp):
        bad = aapp.enqueue(name, payload=payload)
        good = takes_two.enqueue(1, 2)
        record = await finished(bad)
        assert await good.result_async(timeout=10) == 3
    assert (record.state, record.reason, record.attempts) == (TaskState.DEAD, reason, 1)


async def test_an_unknown_name_is_warned_about_once_not_per_task(
    aapp: Conveyor, caplog: pytest.LogCaptureFixture
) -> None:
    aapp.task(name="known")(handlers.square)
    async with running_worker(aapp):
        misspelled = [aapp.enqueue("send_email", payload=i) for i in range(5)]
        other = aapp.enqueue("nobody.handles.this")
        records = [await finished(handle) for handle in [*misspelled, other]]
    assert {(r.state, r.reason) for r in records} == {(TaskState.DEAD, "unknown task")}
    warned = [r.getMessage() for r in caplog.records if "no handler registered" in r.getMessage()]
    assert len(warned) == 2, warned
    assert "'send_email'" in warned[0] and "'nobody.handles.this'" in warned[1], warned
    assert all("Registered here: known" in line for line in warned), warned
    levels = {r.levelname for r in caplog.records if "no handler registered" in r.getMessage()}
    assert levels == {"WARNING"}


async def test_result_that_is_not_json_is_a_clear_dead_letter(aapp: Conveyor) -> None:
    @aapp.task
    def returns_a_set() -> set[int]:
        return {1}

    async with running_worker(aapp):
        record = await finished(returns_a_set.enqueue())
    assert (record.state, record.reason) == (TaskState.DEAD, "result not serializable")


async def test_a_dying_pool_process_counts_as_a_crash(aapp: Conveyor) -> None:
    aapp.task(name="die", executor="process")(handlers.die_in_child)
    async with running_worker(aapp, processes=1):
        record = await finished(aapp.enqueue("die"), timeout=30)
        survivor = aapp.task(name="square", executor="process")(handlers.square).enqueue(3)
        assert await survivor.result_async(timeout=20) == 9
    assert (record.state, record.reason) == (TaskState.DEAD, "worker lost")
    assert record.crashes == aapp.settings.max_crashes and record.failures == 0


async def test_corrupt_arguments_in_redis_are_dead_lettered_and_the_worker_goes_on(
    aapp: Conveyor, r: redis.Redis
) -> None:
    @aapp.task(name="echo")
    def echo(value: int) -> int:
        return value

    broken = echo.enqueue(1)
    keys = aapp.sync_broker().ops.task_keys(broken.id)
    r.hset(keys.task(broken.id), "args", b"[1, \xff not json")  # invalid UTF-8 and JSON
    key = keys.task(broken.id)

    async def dead() -> bool:
        return r.hget(key, "state") == b"dead"

    async with running_worker(aapp):
        await wait_until(dead, 10, "the corrupt task to be dead-lettered")
        assert await echo.enqueue(2).result_async(timeout=10) == 2
    assert r.hget(key, "reason") == b"corrupt record"
    with pytest.raises(SerializationError):  # reading it back says so too, clearly
        broken.record()


# sync handlers on fewer threads than the concurrency


async def test_sync_handlers_never_use_more_threads_than_asked(
    app_with: Callable[..., Conveyor],
) -> None:
    app = app_with()
    lock = threading.Lock()
    running, peak, idents = [0], [0], set()

    @app.task
    def step(n: int, ctx: TaskContext) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            idents.add(threading.get_ident())
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return n * ctx.attempt

    async with running_worker(app, concurrency=10, threads=2) as worker:
        handles = [step.enqueue(n) for n in range(30)]
        results = [await h.result_async(timeout=20) for h in handles]
        assert worker.threads == 2
    assert results == list(range(30))
    assert peak[0] == 2 and len(idents) == 2


async def test_a_sync_timeout_counts_from_the_start_not_from_the_wait_for_a_thread(
    app_with: Callable[..., Conveyor],
) -> None:
    app = app_with()

    @app.task(timeout=1.0, max_retries=0)
    def takes_a_while() -> str:
        time.sleep(0.4)
        return "done"

    async with running_worker(app, concurrency=4, threads=1):
        # the fourth waits about 1.2 s for the only thread, longer than its timeout
        handles = [takes_a_while.enqueue() for _ in range(4)]
        records = [await finished(h, timeout=20) for h in handles]
    assert [r.state for r in records] == [TaskState.SUCCEEDED] * 4


async def test_a_sync_handler_stuck_past_its_timeout_does_not_hold_up_the_others(
    app_with: Callable[..., Conveyor],
) -> None:
    app = app_with()
    release = threading.Event()

    @app.task(timeout=0.3, max_retries=0)
    def stuck() -> None:
        release.wait(20)

    @app.task
    def quick(n: int) -> int:
        return n

    try:
        async with running_worker(app, concurrency=4, threads=1):
            record = await finished(stuck.enqueue(), timeout=10)
            assert (record.state, record.reason) == (TaskState.DEAD, "timeout")
            # its thread is abandoned and replaced: the pool of one thread goes on
            started = time.monotonic()
            results = [await quick.enqueue(n).result_async(timeout=5) for n in range(5)]
            assert results == list(range(5))
            assert time.monotonic() - started < 5
    finally:
        release.set()
