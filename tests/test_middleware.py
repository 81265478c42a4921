"""Middleware: hook order around enqueues (sync and async) and executions (async, thread
and process handlers) on a real Redis and worker; outcomes reported once Redis accepted
them; what a failing hook does; and that an app without middleware builds no enqueue
context and copies no context for its threads."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
from types import SimpleNamespace
from typing import Any

import pytest
import redis

from conveyor import Conveyor, TaskContext, TaskState
from conveyor import middleware as hooks
from conveyor.errors import BrokerUnavailableError
from conveyor.middleware import EnqueueContext, ExecutionContext, Middleware
from conveyor.producer import Message, TaskHandle
from conveyor.settings import Settings
from conveyor.tools.embedded import free_port
from conveyor.worker import executor as executor_module
from tests.support import handlers
from tests.support.keyspace import dump
from tests.support.worker import running_worker, wait_all, wait_until

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
#: what a middleware's before_execute puts in context for the handler to find
SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="")


class Boom(Exception):
    """A hook's deliberate failure."""


class Recorder(Middleware):
    """Appends `(label, hook, task name)` to a shared log; raises in the hooks named."""

    def __init__(
        self,
        label: str,
        log: list[tuple[str, str, str]],
        fail: frozenset[str] = frozenset(),
        outcomes: list[tuple[str, str, str, bool]] | None = None,
    ) -> None:
        self.label, self.log, self.fail = label, log, fail
        #: `(label, outcome, task id, has a handler)` per after_outcome: apart from `log`,
        #: since an outcome is reported when Redis' reply comes, after the record changed
        self.outcomes = [] if outcomes is None else outcomes

    def _note(self, hook: str, name: str) -> None:
        self.log.append((self.label, hook, name))
        if hook in self.fail:
            raise Boom(f"{self.label}.{hook}")

    def before_enqueue(self, ctx: EnqueueContext) -> None:
        self._note("before_enqueue", ctx.task.name)

    def after_enqueue(self, ctx: EnqueueContext, handle: TaskHandle) -> None:
        assert handle.id == ctx.task.id
        self._note("after_enqueue", ctx.task.name)

    def on_enqueue_error(self, ctx: EnqueueContext, error: BaseException) -> None:
        self._note("on_enqueue_error", ctx.task.name)

    def before_execute(self, ctx: ExecutionContext) -> None:
        SEEN.set(self.label)
        self._note("before_execute", ctx.task.name)

    def after_execute(self, ctx: ExecutionContext, result: Any) -> None:
        self._note(f"after_execute={result}", ctx.task.name)

    def on_error(self, ctx: ExecutionContext, error: BaseException) -> None:
        self._note(f"on_error={type(error).__name__}", ctx.task.name)

    def after_outcome(self, ctx: ExecutionContext, outcome: str) -> None:
        self.outcomes.append((self.label, outcome, ctx.task.id, ctx.definition is not None))


def two(
    app: Conveyor, fail_a: frozenset[str] = frozenset(), fail_b: frozenset[str] = frozenset()
) -> list[Any]:
    """Register recorders a then b on `app`; returns their shared log."""
    log: list[Any] = []
    app.add_middleware(Recorder("a", log, fail_a))
    app.add_middleware(Recorder("b", log, fail_b))
    return log


# -- enqueue ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_enqueue_hooks_run_in_order_then_in_reverse(aapp: Conveyor, mode: str) -> None:
    log = two(aapp)
    messages = [Message("first"), Message("second")]
    if mode == "sync":
        handles = aapp.enqueue_many(messages)
    else:
        handles = await aapp.enqueue_many_async(messages)
    assert len(handles) == 2
    assert log == [
        ("a", "before_enqueue", "first"),
        ("b", "before_enqueue", "first"),
        ("a", "before_enqueue", "second"),
        ("b", "before_enqueue", "second"),
        ("b", "after_enqueue", "first"),
        ("a", "after_enqueue", "first"),
        ("b", "after_enqueue", "second"),
        ("a", "after_enqueue", "second"),
    ]


class Stamp(Middleware):
    """Amends the outgoing task: a trace and a higher priority."""

    def before_enqueue(self, ctx: EnqueueContext) -> None:
        options = dataclasses.replace(ctx.task.options, priority=7)
        ctx.task = dataclasses.replace(ctx.task, trace=TRACE, options=options)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_before_enqueue_amends_what_is_stored(settings: Settings, mode: str) -> None:
    app = Conveyor(settings=settings, middleware=[Stamp()])
    try:
        if mode == "sync":
            handle = app.enqueue("stamped")
        else:
            handle = await app.enqueue_async("stamped")
        record = await handle.record_async()
        assert record is not None
        assert (record.trace, record.priority) == (TRACE, 7)
    finally:
        await app.aclose()
        app.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_failing_before_enqueue_sends_nothing_and_unwinds(
    aapp: Conveyor, r: redis.Redis, prefix: str, mode: str
) -> None:
    log = two(aapp, fail_b=frozenset({"before_enqueue"}))
    # b fails on the first task: a's hook on it is unwound; nothing reaches Redis
    with pytest.raises(Boom):
        if mode == "sync":
            aapp.enqueue_many([Message("first"), Message("second")])
        else:
            await aapp.enqueue_many_async([Message("first"), Message("second")])
    assert log == [
        ("a", "before_enqueue", "first"),
        ("b", "before_enqueue", "first"),
        ("a", "on_enqueue_error", "first"),
    ]
    assert dump(r, prefix) == {}  # nothing at all under the prefix


async def test_a_batch_failing_midway_unwinds_every_task_prepared(
    aapp: Conveyor, r: redis.Redis, prefix: str
) -> None:
    log: list[Any] = []

    class FailOnSecond(Middleware):
        def before_enqueue(self, ctx: EnqueueContext) -> None:
            if ctx.task.name == "second":
                raise Boom("second")

    aapp.add_middleware(Recorder("a", log))
    aapp.add_middleware(FailOnSecond())
    aapp.add_middleware(Recorder("c", log))
    with pytest.raises(Boom):
        aapp.enqueue_many([Message("first"), Message("second"), Message("third")])
    assert log == [
        ("a", "before_enqueue", "first"),
        ("c", "before_enqueue", "first"),
        ("a", "before_enqueue", "second"),
        ("a", "on_enqueue_error", "second"),  # the task that failed: a alone ran on it
        ("c", "on_enqueue_error", "first"),  # the task prepared before it: all, reversed
        ("a", "on_enqueue_error", "first"),
    ]
    assert dump(r, prefix) == {}  # nothing at all under the prefix


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_unreachable_redis_gives_every_task_on_enqueue_error(mode: str) -> None:
    log: list[Any] = []
    app = Conveyor(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.5)
    app.add_middleware(Recorder("a", log))
    try:
        with pytest.raises(BrokerUnavailableError):
            if mode == "sync":
                app.enqueue_many([Message("first"), Message("second")])
            else:
                await app.enqueue_many_async([Message("first"), Message("second")])
    finally:
        await app.aclose()
        app.close()
    assert log == [
        ("a", "before_enqueue", "first"),
        ("a", "before_enqueue", "second"),
        ("a", "on_enqueue_error", "first"),
        ("a", "on_enqueue_error", "second"),
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_failing_after_enqueue_is_logged_the_task_stays_stored(
    aapp: Conveyor, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    log = two(aapp, fail_b=frozenset({"after_enqueue"}))
    if mode == "sync":
        handle = aapp.enqueue("kept")
    else:
        handle = await aapp.enqueue_async("kept")
    assert await handle.record_async() is not None
    # b's hook raised; a's still ran after it
    assert log[-2:] == [("b", "after_enqueue", "kept"), ("a", "after_enqueue", "kept")]
    failures = [r for r in caplog.records if r.name == "conveyor.middleware"]
    assert len(failures) == 1
    assert failures[0].levelno == logging.ERROR
    assert failures[0].exc_info is not None and failures[0].exc_info[0] is Boom


# -- execution -------------------------------------------------------------------------


async def test_execute_hooks_wrap_async_thread_and_process_handlers(aapp: Conveyor) -> None:
    log = two(aapp)
    seen: dict[str, str] = {}

    @aapp.task(name="coro")
    async def coro() -> int:
        seen["coro"] = SEEN.get()
        return 1

    @aapp.task(name="sync")
    def sync() -> int:
        seen["sync"] = SEEN.get()  # in a worker thread: the hooks' context reached it
        return 2

    @aapp.task(name="timed", timeout=30)
    def timed() -> int:  # a thread under a timeout takes another path to its thread
        seen["timed"] = SEEN.get()
        return 3

    aapp.task(name="square", executor="process")(handlers.square)
    handles = [
        await aapp.enqueue_async(n, *a)
        for n, a in [("coro", ()), ("sync", ()), ("timed", ()), ("square", (3,))]
    ]
    async with running_worker(aapp, processes=1):
        await wait_all(handles, TaskState.SUCCEEDED)
    assert seen == {"coro": "b", "sync": "b", "timed": "b"}
    for name, result in [("coro", 1), ("sync", 2), ("timed", 3), ("square", 9)]:
        executed = [(m, hook) for m, hook, task in log if task == name and "execute" in hook]
        assert executed == [
            ("a", "before_execute"),
            ("b", "before_execute"),
            ("b", f"after_execute={result}"),
            ("a", f"after_execute={result}"),
        ], name


async def test_a_handler_error_reaches_on_error_in_reverse(aapp: Conveyor) -> None:
    log = two(aapp)

    @aapp.task(name="fails", max_retries=0)
    async def fails() -> None:
        raise ValueError("no")

    handle = await aapp.enqueue_async("fails")
    async with running_worker(aapp):
        await wait_all([handle], TaskState.DEAD)
    assert log[-2:] == [
        ("b", "on_error=ValueError", "fails"),
        ("a", "on_error=ValueError", "fails"),
    ]


async def test_a_timed_out_attempt_reaches_on_error(aapp: Conveyor) -> None:
    log = two(aapp)

    @aapp.task(name="slow", max_retries=0, timeout=0.05)
    async def slow() -> None:
        await asyncio.sleep(30)

    handle = await aapp.enqueue_async("slow")
    async with running_worker(aapp):
        await wait_all([handle], TaskState.DEAD)
    assert log[-2:] == [
        ("b", "on_error=TaskTimeoutError", "slow"),
        ("a", "on_error=TaskTimeoutError", "slow"),
    ]


async def test_a_failing_before_execute_fails_the_attempt_like_the_handler(
    aapp: Conveyor,
) -> None:
    log = two(aapp, fail_b=frozenset({"before_execute"}))
    ran: list[int] = []

    @aapp.task(name="guarded", max_retries=1)
    async def guarded() -> None:
        ran.append(1)

    handle = await aapp.enqueue_async("guarded")
    async with running_worker(aapp):
        await wait_all([handle], TaskState.DEAD)  # retried once, then dead lettered
    assert ran == []
    record = await handle.record_async()
    assert record is not None and record.attempts == 2
    assert record.error is not None and "Boom" in str(record.error)
    executed = [entry for entry in log if "enqueue" not in entry[1]]
    once = [
        ("a", "before_execute", "guarded"),
        ("b", "before_execute", "guarded"),
        ("a", "on_error=Boom", "guarded"),  # b's own hook raised: only a is unwound
    ]
    assert executed == once + once


@pytest.mark.parametrize("hook", ["after_execute=ok", "on_error=ValueError"])
async def test_a_failing_after_hook_is_logged_the_outcome_stands(
    aapp: Conveyor, caplog: pytest.LogCaptureFixture, hook: str
) -> None:
    log = two(aapp, fail_b=frozenset({hook}))
    succeed = hook.startswith("after")

    @aapp.task(name="job", max_retries=0)
    async def job() -> str:
        if not succeed:
            raise ValueError("handler")
        return "ok"

    handle = await aapp.enqueue_async("job")
    async with running_worker(aapp):
        await wait_all([handle], TaskState.SUCCEEDED if succeed else TaskState.DEAD)
    record = await handle.record_async()
    assert record is not None
    if succeed:
        assert record.result == "ok"
    else:  # the handler's error is the one recorded, not the hook's
        assert record.error is not None and "ValueError" in str(record.error)
    assert log[-2:] == [("b", hook, "job"), ("a", hook, "job")]
    failures = [r for r in caplog.records if r.name == "conveyor.middleware"]
    assert [f.exc_info[0] for f in failures if f.exc_info] == [Boom]


# -- outcomes ----------------------------------------------------------------------------


async def test_after_outcome_reports_each_accepted_outcome_in_reverse(aapp: Conveyor) -> None:
    log: list[Any] = []
    outcomes: list[Any] = []
    aapp.add_middleware(Recorder("a", log, outcomes=outcomes))
    aapp.add_middleware(Recorder("b", log, outcomes=outcomes))
    attempts: list[int] = []

    @aapp.task(name="flaky", max_retries=1)
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first")
        return "ok"

    @aapp.task(name="gives_up", max_retries=0, dead_letter=False)
    async def gives_up() -> None:
        raise ValueError("no")

    retried = await aapp.enqueue_async("flaky")
    failed = await aapp.enqueue_async("gives_up")
    unknown = await aapp.enqueue_async("nobody.handles.this")
    async with running_worker(aapp):
        await wait_all([retried], TaskState.SUCCEEDED)
        await wait_all([failed], TaskState.FAILED)
        await wait_all([unknown], TaskState.DEAD)
    by_task = {h.id: [(m, o, known) for m, o, i, known in outcomes if i == h.id]
               for h in (retried, failed, unknown)}  # fmt: skip
    assert by_task[retried.id] == [
        ("b", "retried", True), ("a", "retried", True),
        ("b", "succeeded", True), ("a", "succeeded", True),
    ]  # fmt: skip
    assert by_task[failed.id] == [("b", "failed", True), ("a", "failed", True)]
    # a task no handler is registered for never executes: only its outcome is reported
    assert by_task[unknown.id] == [("b", "dead", False), ("a", "dead", False)]
    assert [hook for _, hook, name in log if name == "nobody.handles.this"] == [
        "before_enqueue", "before_enqueue", "after_enqueue", "after_enqueue"
    ]  # fmt: skip


async def test_a_refused_outcome_is_not_reported(
    aapp: Conveyor, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes: list[Any] = []
    aapp.add_middleware(Recorder("a", [], outcomes=outcomes))
    keys = aapp.producer.sync_broker().ops.queue_keys("default")

    @aapp.task(name="usurped")
    async def usurped(ctx: TaskContext) -> str:
        # as if its lease had expired and another worker claimed it: a new token
        r.hset(keys.task(ctx.task_id), "token", "999999")
        return "late"

    handle = await aapp.enqueue_async("usurped")
    caplog.set_level(logging.WARNING, "conveyor.worker")
    async with running_worker(aapp):
        await wait_until(
            lambda: asyncio.sleep(0, "lease lost" in caplog.text), 10, "the refused ack"
        )
    record = await handle.record_async()
    assert record is not None and record.state == TaskState.ACTIVE  # nothing written
    assert outcomes == []


# -- no middleware -----------------------------------------------------------------------


async def test_without_middleware_no_enqueue_context_is_built_nor_context_copied(
    aapp: Conveyor, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("hook machinery ran without middleware")

    for name in ("prepare", "enqueued", "enqueue_failed"):
        monkeypatch.setattr(hooks, name, never)
    # nor is a context copied for the handlers' threads (only the worker's own
    # instrumentation runs, and it sets no context variable)
    monkeypatch.setattr(executor_module, "contextvars", SimpleNamespace(copy_context=never))

    @aapp.task(name="plain")
    def plain(x: int) -> int:
        return x

    handles = [aapp.enqueue("plain", 1), await aapp.enqueue_async("plain", 2)]
    async with running_worker(aapp):
        await wait_all(handles, TaskState.SUCCEEDED)
