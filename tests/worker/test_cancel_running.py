"""Cancelling a running task: its worker stops the handler (async: cancelled; process: its
child killed; thread: told through ctx.cancelled) and the task ends cancelled, never retried.
Also progress and checkpoints, which the same link carries."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from conveyor import Conveyor, Retry, TaskContext, TaskState
from conveyor.broker.keys import QueueKeys
from conveyor.broker.ops import Op
from conveyor.broker.scripts import Call
from conveyor.errors import ConveyorError, LeaseLostError, SerializationError
from conveyor.producer import TaskHandle
from tests.support import handlers
from tests.support.worker import running_worker, wait_until


async def state_is(handle: TaskHandle, state: TaskState, timeout: float = 10.0) -> None:
    async def reached() -> bool:
        record = await handle.record_async()
        return record is not None and record.state is state

    await wait_until(reached, timeout, f"task {handle.id} to be {state}")


async def cancel_and_time(handle: TaskHandle) -> float:
    """Cancel a running task; the seconds until its record reads cancelled."""
    started = time.monotonic()
    assert await handle.cancel_async() is True
    await state_is(handle, TaskState.CANCELLED, timeout=5)
    return time.monotonic() - started


async def test_an_async_handler_is_stopped_and_the_task_cancelled_within_a_second(
    aapp: Conveyor,
) -> None:
    stopped = asyncio.Event()

    @aapp.task(max_retries=5)
    async def sleeper() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise

    handle = await sleeper.enqueue_async()
    async with running_worker(aapp):
        await state_is(handle, TaskState.ACTIVE)
        took = await cancel_and_time(handle)
        assert took < 1.0, f"cancelled after {took:.2f}s"
        assert stopped.is_set()
        await asyncio.sleep(0.3)  # never retried: it stays cancelled, one attempt
    record = await handle.record_async()
    assert record is not None and record.state is TaskState.CANCELLED
    assert record.attempts == 1 and record.failures == 0
    assert [a.outcome for a in record.history] == ["cancelled"]
    assert record.finished_at is not None


async def test_a_process_handler_has_its_child_killed(aapp: Conveyor, tmp_path: Path) -> None:
    nap = aapp.task(name="nap", executor="process")(handlers.nap_in_child)
    pid_file = tmp_path / "pid"
    handle = await nap.enqueue_async(60, str(pid_file))
    async with running_worker(aapp, processes=1):
        await state_is(handle, TaskState.ACTIVE)
        await wait_until(_exists(pid_file), 20, "the child to start the handler")
        took = await cancel_and_time(handle)
        assert took < 1.0, f"cancelled after {took:.2f}s"
        child = int(pid_file.read_text())
        await wait_until(_gone(child), 5, f"child {child} to be killed")


def _exists(path: Path) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return path.exists() and bool(path.read_text())

    return check


def _gone(pid: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    return check


async def test_a_thread_handler_sees_ctx_cancelled_and_the_task_ends_cancelled(
    aapp: Conveyor,
) -> None:
    started, saw = threading.Event(), threading.Event()

    @aapp.task(max_retries=5)
    def polite(ctx: TaskContext) -> str:
        started.set()
        deadline = time.monotonic() + 30
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        if ctx.cancelled:
            saw.set()
        return "stopped early"  # whatever it returns, the task is cancelled

    handle = await polite.enqueue_async()
    async with running_worker(aapp):
        await asyncio.to_thread(started.wait, 10)
        took = await cancel_and_time(handle)
        assert took < 1.0, f"cancelled after {took:.2f}s"
    assert saw.is_set()
    record = await handle.record_async()
    assert record is not None and record.state is TaskState.CANCELLED
    assert record.result is None and record.attempts == 1


async def test_a_thread_handler_stopped_by_a_refused_report_is_not_retried(
    aapp: Conveyor,
) -> None:
    """A sync handler that reports progress learns of the cancel by the refusal; the error
    it raises then is no failure: the task ends cancelled."""
    started = threading.Event()
    refused: list[BaseException] = []

    @aapp.task(max_retries=5)
    def reporter(ctx: TaskContext) -> None:
        started.set()
        for step in range(3000):
            try:
                ctx.progress(step / 3000)
            except LeaseLostError as exc:
                refused.append(exc)
                raise
            time.sleep(0.01)

    handle = await reporter.enqueue_async()
    async with running_worker(aapp):
        await asyncio.to_thread(started.wait, 10)
        await cancel_and_time(handle)
        await asyncio.sleep(0.3)
    record = await handle.record_async()
    assert record is not None and record.state is TaskState.CANCELLED
    assert record.failures == 0 and [a.outcome for a in record.history] == ["cancelled"]
    assert refused and isinstance(refused[0], LeaseLostError)


async def test_progress_and_checkpoint_show_in_the_record_and_reach_the_next_attempt(
    aapp: Conveyor,
) -> None:
    seen: list[object] = []

    @aapp.task(max_retries=3)
    async def resumable(ctx: TaskContext) -> object:
        seen.append(ctx.last_checkpoint)
        if ctx.last_checkpoint is None:
            await ctx.progress_async(0.25, "a quarter")
            await ctx.checkpoint_async({"offset": 250})
            raise Retry(delay=0)
        await ctx.progress_async(1.0)
        return ctx.last_checkpoint

    handle = await resumable.enqueue_async()
    async with running_worker(aapp):
        await state_is(handle, TaskState.SUCCEEDED)
    assert seen == [None, {"offset": 250}]
    record = await handle.record_async()
    assert record is not None and record.result == {"offset": 250}
    assert record.checkpoint == {"offset": 250}
    assert record.progress is not None
    assert record.progress["fraction"] == 1.0 and record.progress["message"] is None
    assert isinstance(record.progress["at"], int)


async def test_reports_are_validated_before_anything_is_sent(aapp: Conveyor) -> None:
    errors: list[BaseException] = []

    @aapp.task(max_retries=0)
    async def careless(ctx: TaskContext) -> None:
        attempts: list[Callable[[], Awaitable[None]]] = [
            lambda: ctx.progress_async(1.5),
            lambda: ctx.progress_async(float("nan")),
            lambda: ctx.progress_async(True),
            lambda: ctx.checkpoint_async({"when": object()}),
            lambda: ctx.checkpoint_async("x" * 70_000),
        ]
        for attempt in attempts:
            try:
                await attempt()
            except (ValueError, TypeError, SerializationError) as exc:
                errors.append(exc)
        try:
            ctx.progress(0.5)  # the blocking form, on the loop: refused, not a deadlock
        except ConveyorError as exc:
            errors.append(exc)

    handle = await careless.enqueue_async()
    async with running_worker(aapp):
        await state_is(handle, TaskState.SUCCEEDED)
    kinds = [type(e) for e in errors]
    assert kinds == [ValueError, ValueError, TypeError, SerializationError, ValueError,
                     ConveyorError]  # fmt: skip
    assert "between 0.0 and 1.0" in str(errors[0]) and "progress_async" in str(errors[-1])
    record = await handle.record_async()
    assert record is not None and record.progress is None and record.checkpoint is None


async def test_a_process_handler_reports_through_its_pipe_and_resumes(aapp: Conveyor) -> None:
    probe = aapp.task(name="probe", executor="process", max_retries=2)(handlers.probe_context)
    handle = await probe.enqueue_async()
    async with running_worker(aapp, processes=1):
        await state_is(handle, TaskState.SUCCEEDED)
    record = await handle.record_async()
    assert record is not None and record.attempts == 2
    child = record.checkpoint["pid"]
    assert child != os.getpid()
    assert record.progress is not None and record.progress["message"] == f"in process {child}"
    assert record.result == {
        "checkpoint": {"pid": child},
        "cancelled": False,
        "refused": "progress fraction must be between 0.0 and 1.0, not 1.5",
    }


async def test_a_process_handler_that_lost_its_task_has_its_report_refused(
    app_with: Callable[..., Conveyor], tmp_path: Path
) -> None:
    """A refusal crosses the pipe as LeaseLostError: here the task is cancelling when the
    report arrives, and its worker not yet told (no message, no beat for 10 s)."""
    app = app_with(lease_timeout=30.0)
    report = app.task(name="late", executor="process", max_retries=0)(handlers.report_late)
    gate = tmp_path / "gate"
    handle = await report.enqueue_async(str(gate))
    async with running_worker(app, processes=1):
        await state_is(handle, TaskState.ACTIVE)
        # what cancel.lua does, less the message: the worker would kill the child at once
        await app.async_broker().run(_mark_cancelling(app, handle.id))
        gate.write_text("go")
        await wait_until(_exists(tmp_path / "gate.out"), 20, "the child's report")
        # its outcome (None) is refused in turn, and its worker ends it cancelled
        await state_is(handle, TaskState.CANCELLED, timeout=5)
    assert (tmp_path / "gate.out").read_text() == "LeaseLostError"
    await app.aclose()


def _mark_cancelling(app: Conveyor, task_id: str) -> Op[Any]:
    key = app.async_broker().ops.task_keys(task_id).task(task_id)
    return Op([Call.command("HSET", key, "state", "cancelling")], lambda replies: replies[0])


@pytest.mark.parametrize("outcome", ["returns", "raises"])
async def test_a_cancel_landing_as_the_handler_ends_still_ends_cancelled(
    aapp: Conveyor, outcome: str
) -> None:
    """The task is cancelling when its outcome is written: the outcome is refused, and the
    worker ends the task cancelled rather than leave it to its lease."""
    release = asyncio.Event()

    @aapp.task(max_retries=5)
    async def stubborn() -> str:
        with contextlib.suppress(asyncio.CancelledError):  # as careless code does
            await asyncio.sleep(60)
        await release.wait()
        if outcome == "raises":
            raise RuntimeError("late failure")
        return "late success"

    handle = await stubborn.enqueue_async()
    async with running_worker(aapp):
        await state_is(handle, TaskState.ACTIVE)
        await handle.cancel_async()
        await asyncio.sleep(0.2)
        release.set()
        await state_is(handle, TaskState.CANCELLED, timeout=5)
    record = await handle.record_async()
    assert record is not None and record.result is None and record.failures == 0


async def test_a_lost_cancel_message_delays_the_stop_by_one_beat_at_most(
    app_with: Callable[..., Conveyor], r: redis.Redis, keys: QueueKeys
) -> None:
    app = app_with(lease_timeout=1.5)  # a beat every 0.5 s
    stopped = asyncio.Event()

    @app.task
    async def sleeper() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise

    handle = await sleeper.enqueue_async()
    async with running_worker(app):
        await state_is(handle, TaskState.ACTIVE)
        # what cancel.lua does, less its message on the cancel channel
        r.hset(keys.task(handle.id), "state", "cancelling")
        started = time.monotonic()
        await state_is(handle, TaskState.CANCELLED, timeout=5)
        took = time.monotonic() - started
    assert stopped.is_set()
    assert took < app.settings.heartbeat_interval + 0.5, f"stopped after {took:.2f}s"
    await app.aclose()
